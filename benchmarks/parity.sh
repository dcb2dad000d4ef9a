#!/usr/bin/env bash
# Parity check against the original L2UL code's reference run (issue 2/4): real CIFAR-10 ResNet-20,
# k = 16, seed 0, the paper's CIFAR-10 recipe, D_r on a fixed 10k subset. Two runs: BatchNorm frozen
# (l2ul's default) and BatchNorm in train mode (what the original code does).
# Usage: bash benchmarks/parity.sh [SHARED_DIR]   (default ../shared)
set -euo pipefail
SHARED=${1:-../shared}
for BN in train freeze; do
  l2ul bench --arch resnet20 --weights "$SHARED/datasets/pretrained/cifar10_resnet20-12fca82f.th" \
    --dataset "cifar10-jpeg:$SHARED/datasets/cifar10_jpeg.npz" \
    --methods neggrad,adv,l2ul --k 16 --seeds 0 --bn "$BN" \
    --out "benchmarks/results/parity_bn_$BN" --no-progress
done
