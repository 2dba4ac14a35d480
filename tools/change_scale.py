"""Warm-start a network with its cells at another resolution from a weights file, e.g. tmics-light at size
`small` (cells at 1/2 resolution) to `small-full` (cells at full resolution), to fine-tune with
`tmics train --size small-full --init OUT`. The heads' weights for sub-pixel positions that fold together are
summed and the tails' outputs averaged (tmics_cli.model.change_scale); every other tensor is copied. The
output is stored in float32.

    python tools/change_scale.py weights/tmics-light.safetensors --scale 1 -o light-full.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tmics_cli.model import WeightsError, change_scale, load_model, read_metadata, save_model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("weights", type=Path)
    parser.add_argument("--scale", type=int, required=True, help="the new scale; must divide the file's")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    if args.output.resolve() == args.weights.resolve():
        parser.error("the output must not be the input")
    try:
        meta = read_metadata(args.weights)
        source_model = load_model(args.weights)
        model = change_scale(source_model, args.scale)
    except (WeightsError, ValueError) as exc:
        parser.exit(1, f"error: {exc}\n")
    keep = {k: v for k, v in meta.items() if k not in {"format", "config", "dtype", "heldout_scores"}}
    source = {"file": args.weights.name, "scale": source_model.config.scale, **keep}
    extra = {"rescaled_from": json.dumps(source)}
    save_model(model, args.output, metadata=extra)  # float32: the folded sums are kept exactly
    print(f"wrote {args.output}: {args.weights.name} with its cells at scale {args.scale}")


if __name__ == "__main__":
    main()
