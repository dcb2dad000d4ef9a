#!/usr/bin/env bash
# Parity with the original L2UL code's reference run (issue 4): real CIFAR-10 ResNet-20, k = 16, the paper's
# CIFAR-10 recipe, D_r on a fixed 10k subset.
#  1. On the forget set the original script itself draws (torch.manual_seed(0); torch.randperm(50000)[:16]),
#     with ablations that explain the remaining differences (benchmarks/parity_same_instances.py).
#  2. BatchNorm frozen (eval mode) instead of the original's train mode, on random_forget_ids(16, seed=0).
# Usage: bash benchmarks/parity.sh [SHARED_DIR]   (default ../shared)
set -euo pipefail
SHARED=${1:-../shared}
python benchmarks/parity_same_instances.py --shared "$SHARED" --out benchmarks/results/parity_same_instances
l2ul bench --arch resnet20 --weights "$SHARED/datasets/pretrained/cifar10_resnet20-12fca82f.th" \
  --dataset "cifar10-jpeg:$SHARED/datasets/cifar10_jpeg.npz" \
  --methods neggrad,adv,l2ul --k 16 --seeds 0 --bn freeze \
  --out benchmarks/results/parity_bn_freeze --no-progress
