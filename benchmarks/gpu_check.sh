#!/usr/bin/env bash
# The CUDA checks of the refinement stages in one script, for a machine with one NVIDIA GPU
# and a python3 that has torch, numpy, opencv, scikit-image, pyyaml and tqdm (it needs no
# install of this project: the repository root goes on PYTHONPATH).
#
#   bash benchmarks/gpu_check.sh --fetch   # where pip can reach the index: cp312 wheels of
#                                          # what such an image usually lacks, into .whl/
#   bash benchmarks/gpu_check.sh           # on the GPU machine (installs .whl/ to /tmp/site)
#
# Prints, with the card's name: (0) the CUDA tests; (1) the network's forward throughput and MFU in float32,
# bfloat16 and bfloat16 + channels_last + torch.compile; (2) the bfloat16 accuracy check on
# the demo set with the demo checkpoint (mean / min mask IoU to float32; the target is a
# mean >= 0.999); (3) refine-coco end to end with the official network, the faithful baseline
# (float32, one image's instances per batch) against the optimised path in the same run, and
# refine-big images/s; (4) the same with CUDA graphs; (5) autotuned kernels. Logs go to $OUT
# (default /tmp/gpu_check).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(pycocotools==2.0.11 zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0)
if [[ "${1:-}" == --fetch ]]; then
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
  exit 0
fi
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

echo "== 0. CUDA tests (tests/gpu: CPU vs CUDA, packed HR groups, bf16 and compiled paths)"
python3 -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee "$OUT/tests_gpu.txt"

echo "== 1. network forward (official, batch 32)"
python3 benchmarks/unet_throughput.py --device cuda --presets official --batches 32 \
  --dtypes float32 bfloat16 --min-seconds 3 2>&1 | tee "$OUT/unet_eager.txt"
python3 benchmarks/unet_throughput.py --device cuda --presets official --batches 32 \
  --dtypes bfloat16 --channels-last --compile --min-seconds 3 2>&1 | tee "$OUT/unet_compiled.txt"

echo "== 2. bfloat16 accuracy on the demo set (demo checkpoint)"
python3 benchmarks/refine_throughput.py --scale default --device cuda \
  --checkpoint checkpoints/demo_lr_tiny.pt --model-size 128 --bf16 --skip-big 2>&1 \
  | tee "$OUT/bf16_accuracy.txt"

echo "== 3. refine-coco and refine-big end to end (official network)"
python3 benchmarks/refine_throughput.py --scale default --device cuda --checkpoint official \
  --bf16 --channels-last --compile 2>&1 | tee "$OUT/refine_official.txt"

echo "== 4. refine-coco with CUDA graphs (compile mode reduce-overhead)"
python3 benchmarks/refine_throughput.py --scale default --device cuda --checkpoint official \
  --bf16 --channels-last --compile --compile-mode reduce-overhead --skip-big 2>&1 \
  | tee "$OUT/refine_cudagraphs.txt"

echo "== 5. network forward with autotuned kernels (compiles for minutes)"
python3 benchmarks/unet_throughput.py --device cuda --presets official --batches 32 \
  --dtypes bfloat16 --channels-last --compile --compile-mode max-autotune --min-seconds 3 2>&1 \
  | tee "$OUT/unet_autotuned.txt"
