#!/usr/bin/env bash
# GPU check of issue 14: a Sentinel-2-size scene (10,980 x 10,980 px, 3 bands) through geosam with SAM ViT-B
# masks (32 x 32 points) and classes on one GPU; prints tiles/s, GPU memory, GPU busy share and the
# projected time for the full tile (target: under 3 minutes on an H100/H200-class GPU). Finishes within
# 10 minutes: installing takes what it takes, the measurement gets the rest of the budget.
#
#   bash benchmarks/gpu_check.sh              # on the GPU machine, from anywhere
#   bash benchmarks/gpu_check.sh --smoke      # tiny CPU run (the test suite runs this)
#
# Environment: PYTHON=<interpreter that already has geosam's dependencies> skips the install;
# GEOSAM_GPU_CHECK_S (default 570) is the whole budget in seconds; GEOSAM_BENCH_WORK the scratch folder.
# Installs only from pip's configured indexes (PyPI, local wheel folders): a virtual environment
# .venv-gpu with access to system packages (a preinstalled CUDA torch is used as it is), then geosam.
# Results: benchmarks/results/gpu_throughput.json (gpu_throughput_smoke.json for --smoke).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"
start=$(date +%s)
budget=${GEOSAM_GPU_CHECK_S:-570}
smoke=0
if [ "${1:-}" = "--smoke" ]; then
    smoke=1
    shift
fi

if [ "$smoke" = 0 ]; then
    echo "== GPU" && (nvidia-smi -L || echo "nvidia-smi not found: no NVIDIA GPU visible")
fi
py="${PYTHON:-}"
if [ -z "$py" ]; then
    if [ ! -x .venv-gpu/bin/python ]; then
        python3 -m venv --system-site-packages .venv-gpu
    fi
    py=.venv-gpu/bin/python
    if ! "$py" -c "import torch, segment_anything, rasterio, geosam" 2>/dev/null; then
        echo "== installing geosam into .venv-gpu (pip's configured indexes only)"
        "$py" -m pip install -q --disable-pip-version-check -e .
    fi
fi
"$py" - <<'PY'
import torch
print(f"== torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}, bf16: {torch.cuda.is_bf16_supported()}" if torch.cuda.is_available() else ""))
PY
left=$(( budget - ($(date +%s) - start) - 30 ))
if [ "$smoke" = 1 ]; then
    exec "$py" benchmarks/gpu_throughput.py --size smoke --budget-s 120 "$@"
fi
if [ "$left" -lt 120 ]; then
    echo "only ${left} s left after installing: too little for a measurement" >&2
    exit 1
fi
echo "== measuring (budget ${left} s)"
exec timeout "$(( left + 20 ))" "$py" benchmarks/gpu_throughput.py --budget-s "$left" "$@"
