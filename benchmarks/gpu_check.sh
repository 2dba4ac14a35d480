#!/usr/bin/env bash
# The speed issue's GPU measurement, one command on a CUDA machine with the project checked out (no network):
#     bash benchmarks/gpu_check.sh "$OUT"          # results: $OUT/gpu_check.json, $OUT/gpu_check.log
# Runs benchmarks/gpu_check.py (see its docstring for the parts) under a hard 235 s limit; its own budget
# is 220 s and it writes its JSON after every case, so a cut-off run still leaves partial results.
# PyAV is optional: a wheel carried in .whl/ (e.g. av-*-abi3-manylinux*_x86_64.whl) is installed offline
# into /tmp/site first; without one the end-to-end part is skipped. Extra arguments go to gpu_check.py
# (e.g. --dry-run, --budget 120, --parts stages memory). On a lent machine: the command
# `bash benchmarks/gpu_check.sh "$OUT"` with a 300 s limit (carry .whl for PyAV, 36 MB); with time to spare, a
# second call `bash benchmarks/gpu_check.sh "$OUT" --parts compile --budget 150` (gpu_check-compile.json); then here
# `python benchmarks/derain_speed.py --merge FILES_AT/gpu_check.json` and `--markdown` for the README.
set -u
out="${1:-${OUT:-gpu_check_out}}"
[ $# -gt 0 ] && shift
mkdir -p "$out" && out="$(cd "$out" && pwd)" || exit 1
cd "$(dirname "$0")/.." || exit 1
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
if ls .whl/av-*.whl >/dev/null 2>&1 && ! python3 -c "import av" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/av-*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
set -o pipefail
timeout -k 5 235 python3 benchmarks/gpu_check.py --out "$out" "$@" 2>&1 | tee -a "$out/gpu_check.log"
rc=$?
[ $rc -eq 124 ] && echo "gpu_check: stopped at 235 s; the JSON in $out holds the cases finished"
exit $rc
