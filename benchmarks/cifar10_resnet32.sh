#!/usr/bin/env bash
# The ResNet-32 rows of BENCHMARKS.md section 5 (issue #11: "the same k = 16 rows on the shared ResNet-32, to
# show it is not tuned to one network"): the real CIFAR-10 ResNet-32 (akamaster weights, trained on the original
# train split) on the JPEG copy of CIFAR-10 in ../shared/datasets, with l2ul's defaults. Every step resumes.
# repair_proxy and repair_free ran before 0.4's small-KL stop (repair_stop_kl 0.005): --repair-stop-kl 0
# reproduces them (the rule off); the relabel steps run with it.
# Usage: bash benchmarks/cifar10_resnet32.sh [SHARED_DIR] [STEP...]   (steps: repair_proxy repair_free
#        repair_relabel_proxy repair_relabel_free repair_free_kd repair_free_synth400_cosine
#        repair_relabel_free_synth400_cosine repair_relabel_free_kd3_synth400_cosine repair_relabel_free_long
#        head_edit_proxy)
set -euo pipefail
SHARED=${1:-../shared}; shift || true
STEPS=${*:-repair_proxy repair_free repair_relabel_proxy repair_relabel_free}
MODEL=(--arch resnet32 --weights "$SHARED/datasets/pretrained/cifar10_resnet32-d509ac18.th")
DATA=(--dataset "cifar10-jpeg:$SHARED/datasets/cifar10_jpeg.npz")
OUT=benchmarks/results
# The data-free steps committed before 0.4.0's synthesis default (400 pixel steps on a cosine schedule) pass
# the old one, 200 constant steps ($OLD_SYNTH), which reproduces them (their synthesis is a different cache entry).
OLD_SYNTH=(--synth-steps 200 --synth-schedule constant)
for step in $STEPS; do
  case $step in
    head_edit_proxy)  # --preset fast's forget phase (the closed-form head edit, no repair steps), with proxy, k = 16
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --proxy-test-split 5000 \
        --forget-phase head_edit --repair-steps 0 --out $OUT/resnet32_head_edit_proxy --no-progress ;;
    repair_proxy)  # the default method with 5,000 unlabeled test images as proxy (D_test: the other 5,000)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --proxy-test-split 5000 \
        --repair-stop-kl 0 --out $OUT/resnet32_repair_proxy --no-progress ;;
    repair_free)   # data-free: 1,024 images synthesised once from the model's BN statistics (cached per model)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 \
        --repair-stop-kl 0 "${OLD_SYNTH[@]}" --out $OUT/resnet32_repair_free --no-progress ;;
    repair_relabel_proxy)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --proxy-test-split 5000 \
        --relabel-random --relabel-forget-kd 1 --out $OUT/resnet32_repair_relabel_proxy --no-progress ;;
    repair_relabel_free)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --relabel-random \
        "${OLD_SYNTH[@]}" --relabel-forget-kd 1 --out $OUT/resnet32_repair_relabel_free --no-progress ;;
    repair_free_kd)  # data-free with distillation during the forget phase (forget_kd 3)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --forget-kd 3 \
        "${OLD_SYNTH[@]}" --out $OUT/resnet32_repair_free_kd --no-progress ;;
    repair_free_synth400_cosine)  # data-free, as repair_free, with a better synthesis: 400 pixel steps per batch on
                                  # a cosine schedule (56% in class on one batch against 31%: synthesis_probe.py)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --synth-steps 400 \
        --synth-schedule cosine --repair-stop-kl 0 --out $OUT/resnet32_repair_free_synth400_cosine --no-progress ;;
    repair_relabel_free_synth400_cosine)  # repair_relabel_free with 0.4.0's default synthesis (400 cosine steps)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --relabel-random \
        --synth-steps 400 --synth-schedule cosine --relabel-forget-kd 1 --out $OUT/resnet32_repair_relabel_free_synth400_cosine --no-progress ;;
    repair_relabel_free_kd3_synth400_cosine)  # the same with relabel_forget_kd 3
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --relabel-random \
        --relabel-forget-kd 3 --synth-steps 400 --synth-schedule cosine \
        --out $OUT/resnet32_repair_relabel_free_kd3_synth400_cosine --no-progress ;;
    repair_relabel_free_long)  # relabel data-free with the 0.4.0 defaults and a doubled repair budget
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --relabel-random --relabel-forget-kd 3 \
        --synth-steps 400 --synth-schedule cosine --repair-steps 600 --out $OUT/resnet32_repair_relabel_free_long --no-progress ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
