#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): train, bf16, search, export and a one-process NCCL run on the
# GPU beside the CPU, in under 10 minutes on one GPU; without a GPU, pass --quick for the CPU fallback.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export RECARCH_DATA=${RECARCH_DATA:-$(cd .. && pwd)/shared/data}
timeout 600 "$PY" benchmarks/gpu_check.py "$@"
"$PY" benchmarks/render.py
