#!/usr/bin/env bash
# One-shot check of a machine with one GPU (about 5 minutes): the step benchmark on CUDA,
# eager and compiled; a 2-epoch LIT run in fp32 and bf16; the speed stage; peak GPU memory.
# Writes benchmarks/results/gpu-check.json (--output to change) and prints a summary.
# Options: --quick (tiny sizes), --output FILE, --work-dir DIR, --tolerance X, --cpu-step-bench;
# see `bash benchmarks/gpu_check.sh --help`. Python: $PYTHON, else the project's .venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
if [[ ! -x "$python" ]]; then
    python="$(command -v python3)"
fi
exec "$python" "$root/benchmarks/gpu_check.py" "$@"
