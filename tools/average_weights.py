"""Average weights files of one network into one (a "model soup"), e.g. tmics-light rounds fine-tuned one
from another. The output keeps the first file's storage dtype and free-form metadata, and records the sources.

    python tools/average_weights.py r12.safetensors r13.safetensors r14.safetensors -o soup.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tmics_cli.model import WeightsError, average_models, read_metadata, save_model
from tmics_cli.model.io import STORAGE_DTYPES


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("weights", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    if args.output.resolve() in {p.resolve() for p in args.weights}:
        parser.error("the output must not be one of the inputs")
    try:
        metas = [read_metadata(p) for p in args.weights]
        model = average_models(args.weights)
    except WeightsError as exc:
        parser.exit(1, f"error: {exc}\n")
    # what describes one source's run (its steps, command, scores, own sources) goes into the list of sources
    per_run = {"format", "config", "dtype", "heldout_scores", "steps", "command", "averaged_from"}
    extra = {k: v for k, v in metas[0].items() if k not in per_run}
    sources = []
    for p, m in zip(args.weights, metas, strict=True):
        source = {"file": p.name, "steps": json.loads(m.get("steps", "null")), "command": m.get("command")}
        if "averaged_from" in m:
            source["averaged_from"] = json.loads(m["averaged_from"])
        sources.append(source)
    extra["averaged_from"] = json.dumps(sources)
    suffix = ", averaged by tools/average_weights.py"
    extra["trained_by"] = extra.get("trained_by", "unknown").removesuffix(suffix) + suffix
    save_model(model, args.output, dtype=STORAGE_DTYPES[metas[0]["dtype"]], metadata=extra)
    print(f"wrote {args.output}: the mean of {len(args.weights)} files")


if __name__ == "__main__":
    main()
