#!/usr/bin/env bash
# The BENCHMARKS.md runs on the real CIFAR-10 ResNet-20 (akamaster weights, trained on the original CIFAR-10
# train split) and the JPEG copy of CIFAR-10 in ../shared/datasets, the paper's CIFAR-10 recipe.
# Every step resumes where a killed run stopped. Usage: bash benchmarks/cifar10_resnet20.sh [SHARED_DIR] [STEP...]
set -euo pipefail
SHARED=${1:-../shared}; shift || true
STEPS=${*:-grid continual oracle k128}
MODEL=(--arch resnet20 --weights "$SHARED/datasets/pretrained/cifar10_resnet20-12fca82f.th")
DATA=(--dataset "cifar10-jpeg:$SHARED/datasets/cifar10_jpeg.npz")
OUT=benchmarks/results
for step in $STEPS; do
  case $step in
    grid)       # methods x k x 3 seeds
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods neggrad,adv,l2ul --k 1,16,64 --seeds 0,1,2 \
        --out $OUT/resnet20_grid --no-progress ;;
    oracle)     # the oracle on the same grid (same D_r subset: the method list is not part of the settings)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods oracle --k 1,16,64 --seeds 0,1,2 \
        --out $OUT/resnet20_grid --no-progress ;;
    continual)  # 8 successive requests of 16
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods neggrad,l2ul --requests 8 --k 16 --seeds 0 \
        --out $OUT/resnet20_continual --no-progress ;;
    k128)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods neggrad,adv,l2ul --k 128 --seeds 0 \
        --out $OUT/resnet20_k128 --no-progress ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
