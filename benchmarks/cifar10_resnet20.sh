#!/usr/bin/env bash
# The BENCHMARKS.md runs on the real CIFAR-10 ResNet-20 (akamaster weights, trained on the original CIFAR-10
# train split) and the JPEG copy of CIFAR-10 in ../shared/datasets, with the paper's CIFAR-10 recipe
# (the defaults). Every step resumes where a killed run stopped.
# Usage: bash benchmarks/cifar10_resnet20.sh [SHARED_DIR] [STEP...]   (steps: grid grid_large grid_nearest oracle continual)
set -euo pipefail
SHARED=${1:-../shared}; shift || true
STEPS=${*:-grid grid_large grid_nearest oracle continual}
MODEL=(--arch resnet20 --weights "$SHARED/datasets/pretrained/cifar10_resnet20-12fca82f.th")
DATA=(--dataset "cifar10-jpeg:$SHARED/datasets/cifar10_jpeg.npz")
OUT=benchmarks/results
for step in $STEPS; do
  case $step in
    grid)       # methods x k x 3 seeds
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods neggrad,adv,l2ul --k 1,16 --seeds 0,1,2 \
        --out $OUT/resnet20_grid --no-progress ;;
    oracle)     # the oracle (needs the remaining data; fine-tunes outside the D_r evaluation subset), seed 0
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods oracle --k 16,1,64,128 --seeds 0 \
        --out $OUT/resnet20_oracle --no-progress ;;
    grid_large)  # the large-k half of the grid, its own run (its D_r subset excludes these forget sets)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods neggrad,adv,l2ul --k 64,128 --seeds 0,1,2 \
        --out $OUT/resnet20_grid_k64_128 --no-progress ;;
    grid_nearest)  # l2ul's option beyond the paper: frozen batch norm + descent toward the nearest wrong class
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods neggrad,adv,l2ul --k 1,16 --seeds 0,1,2 \
        --bn freeze --forget-loss nearest --out $OUT/resnet20_grid_nearest_freeze --no-progress ;;
    continual)  # 8 successive requests of 16
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods neggrad,l2ul --requests 8 --k 16 --seeds 0 \
        --out $OUT/resnet20_continual --no-progress ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
# Extra (not in the default steps): k = 1 with batch norm frozen, to compare with the grid's bn=train rows:
#   l2ul bench --arch resnet20 --weights $SHARED/datasets/pretrained/cifar10_resnet20-12fca82f.th \
#     --dataset cifar10-jpeg:$SHARED/datasets/cifar10_jpeg.npz --methods neggrad,adv,l2ul --k 1 --seeds 0,1,2 \
#     --bn freeze --out benchmarks/results/resnet20_k1_bn_freeze --no-progress
