#!/usr/bin/env bash
# The CUDA path in one call, without Ray, on a machine that has PyTorch with CUDA but not this project's environment:
#   1. bench.throughput --gpu: the paper-scale adaptation step (ResNet-50 trunk, 224 px, 8 clips x 30 frames), bf16 +
#      channels_last against fp32 and a bare trunk, peak memory, and 1, 2 and 4 trials packed on the GPU;
#   2. bench.ablation on the smoke stages with --device cuda --bf16: every stage trained and the pose-flip and full
#      rows adapted on the GPU beside the reference lines (mean pose, source only, oracle), each stage's time printed.
# It writes at most six files, all directly in OUT: gpu.md, gpu.json, ablation.md, ablation.json and a log of each.
#
#   bash bench/gpu_check.sh OUT            # on the GPU
#   bash bench/gpu_check.sh OUT cpu        # the same commands at toy size on the CPU, to try the script
#
# search.space needs optuna; where it is missing, carry it as wheels (bench/README.md, "On a lent GPU").
set -uo pipefail
out=${1:?usage: bash bench/gpu_check.sh OUT [cuda|cpu]}
device=${2:-cuda}
cd "$(dirname "$0")/.."
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
if [ "$device" = cpu ]; then
  throughput=(--tiny --steps 2 --pack 1 2)
  ablation=(--steps 4 --stages-space bench/spaces/trial-overhead.yaml --source-steps 20 --threads 2)
else
  throughput=()
  ablation=(--steps 150 --threads 8)
fi
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee "$out/throughput.log"
status=0
"$python" -m bench.throughput --gpu --device "$device" "${throughput[@]}" --out "$out" 2>&1 | tee -a "$out/throughput.log" ||
  status=1
"$python" -m bench.ablation --seeds 0 --rows 2 4 --schedule weighted --nonlocal-space pose --contrastive-weight 0.1 \
  --device "$device" --bf16 --cache "${TMPDIR:-/tmp}/nlrd-gpu-check-cache" --out "$out" "${ablation[@]}" 2>&1 |
  tee "$out/ablation.log" || status=1
exit $status
