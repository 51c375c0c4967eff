#!/usr/bin/env bash
# The GPU benchmark, one prepared run of at most 8 minutes (bench/README.md, "GPU"):
#   bash bench/gpu.sh --prepare    # on a machine with the repo's models: the kit to carry
#   bash bench/gpu.sh              # on the GPU machine (no internet): every part, one summary
#   bash bench/gpu.sh --cpu        # anywhere: the same parts on a tiny model on CPU (checks the harness)
# It installs nothing from the network: wheels carried in .whl/ (if any) go into a private folder.
set -u
cd "$(dirname "$0")/.."

# The project's venv where it works here, else the machine's python3 (a GPU image's, holding torch).
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if .venv/bin/python -c 'import torch' >/dev/null 2>&1; then PY=.venv/bin/python; else PY=python3; fi
fi

if ls .whl/*.whl >/dev/null 2>&1; then
  SITE=${FTCLI_BENCH_SITE:-/tmp/ftcli-bench-site}
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || { echo "bench/gpu.sh: installing the carried wheels (.whl/) failed" >&2; exit 2; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
# ftcli from this tree, installed or not; the bench's own modules import each other by name.
export PYTHONPATH="$PWD/src:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}"
# No network there: never wait on the Hub. The kit's data, if carried, stands in for ../shared/data.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if [ -z "${FTCLI_BENCH_DATA:-}" ] && [ -d bench/results/gpu-kit/data ] && [ ! -d ../shared/data ]; then
  export FTCLI_BENCH_DATA="$PWD/bench/results/gpu-kit/data"
fi
exec "$PY" bench/gpu.py "$@"
