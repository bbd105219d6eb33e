#!/bin/bash
# The one prepared script for a lent GPU machine (issue 18 item 4): the CUDA tests, then photos/s of
# exact and fast mode at 12 MP. Run from the repository root with the project installed, e.g. through
# the device tool:  bash benchmarks/gpu_check.sh ../shared/data/digicam  (writes under $OUT if set).
# Budget: about 5 minutes on an H100/H200, most of it the benchmark's model loads and warm-ups.
set -u
DATA=${1:-../shared/data/digicam}
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
python -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" \
  | tee "$OUT/torch.txt"
HF_HUB_OFFLINE=1 python -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_fast_mode.py \
  -k "cuda or Cuda or gpu" 2>&1 | tail -20 | tee "$OUT/pytest.txt"
HF_HUB_OFFLINE=1 timeout 420 python benchmarks/bench_fast_mode.py speed --data "$DATA" --device cuda \
  --sizes 1 12 --grids default dense --repeats 3 --out "$OUT/speed_cuda.json" 2>&1 | tail -20 | tee "$OUT/speed.txt"
