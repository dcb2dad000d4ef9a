#!/usr/bin/env bash
# The BENCHMARKS.md runs on the real CIFAR-10 ResNet-20 (akamaster weights, trained on the original CIFAR-10
# train split) and the JPEG copy of CIFAR-10 in ../shared/datasets, with the paper's CIFAR-10 recipe
# (the defaults). Every step resumes where a killed run stopped.
# Usage: bash benchmarks/cifar10_resnet20.sh [SHARED_DIR] [STEP...]   (steps: grid grid_k64 grid_k128 grid_nearest nearest_k64 oracle oracle_s0 budget_k64 continual continual_nearest
#        repair_proxy repair_proxy_fast repair_relabel_proxy repair_relabel_free peers_k16 peers_k128 repair_proxy_sgd repair_free repair_free_adam repair_free_cosine repair_free_k1 repair_proxy_large repair_free_large repair_continual_proxy repair_continual_free repair_continual_free_original unseen_k16 unseen_k64 repair_relabel_proxy_kd
#        repair_proxy_logit repair_proxy_fast_logit repair_free_fast_logit repair_proxy_large_logit repair_proxy_k128_long repair_free_k128_long repair_free_k128_kd repair_free_logit repair_continual_proxy_logit
#        repair_continual_free_kd repair_free_kd repair_free_k1_kd repair_relabel_free_kd3 repair_free_k128_kd10
#        repair_free_k128_kd10_long repair_free_k128_kd10_long_synth400_cosine repair_free_synth400_cosine
#        repair_continual_free_synth400_cosine repair_relabel_free_synth400_cosine
#        repair_relabel_free_kd3_synth400_cosine repair_free_long_synth400_cosine
#        repair_continual_free_long_synth400_cosine repair_continual_free_original_synth400_cosine
#        repair_relabel_proxy_kd3 repair_free_k128_synth400_cosine repair_free_k64_synth400_cosine
#        repair_continual_free_original_seeds12 repair_continual_proxy_logit_seeds12 head_edit_proxy head_edit_free
#        repair_free_k128_long_synth400_cosine repair_continual_free_long_synth800
#        repair_continual_free_long_nostopkl)
set -euo pipefail
SHARED=${1:-../shared}; shift || true
# The repair steps committed before 0.4's logit term (repair_logit_weight 10) pass --repair-logit-weight 0, which
# reproduces them; repair_free_large, repair_continual_free, repair_relabel_*_kd/free and the *_logit steps use
# the 0.4 defaults. peers_k16 started before it too, so its repair row is the KL-only repair.
# Every repair step that ran before 0.4's small-KL stop (repair_stop_kl 0.005) passes --repair-stop-kl 0, which
# reproduces it (the rule was off); repair_continual_free is the first run with it on.
# The steps at k >= 100 committed before 0.4.0's automatic repair budget (300 steps, 600 from 100 instances on)
# pass --repair-steps 300, which reproduces them; at k = 128 the automatic budget is repair_*_k128_long's 600.
STEPS=${*:-grid grid_k64 grid_k128 grid_nearest nearest_k64 oracle continual continual_nearest}
MODEL=(--arch resnet20 --weights "$SHARED/datasets/pretrained/cifar10_resnet20-12fca82f.th")
DATA=(--dataset "cifar10-jpeg:$SHARED/datasets/cifar10_jpeg.npz")
OUT=benchmarks/results
# The data-free steps committed before 0.4.0's synthesis default (400 pixel steps on a cosine schedule) pass
# the old one, 200 constant steps ($OLD_SYNTH), which reproduces them (their synthesis is a different cache entry).
OLD_SYNTH=(--synth-steps 200 --synth-schedule constant)
for step in $STEPS; do
  case $step in
    grid)       # methods x k x 3 seeds
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods neggrad,adv,l2ul --k 1,16 --seeds 0,1,2 \
        --out $OUT/resnet20_grid --no-progress ;;
    oracle)     # the oracle (needs the remaining data; fine-tunes outside the D_r evaluation subset), added to the
                # grid folders above (a folder's D_r subset depends on its k's and seeds, not on its methods)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods oracle --k 16,1 --seeds 0,1,2 --out $OUT/resnet20_grid --no-progress
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods oracle --k 64 --seeds 0,1,2 --out $OUT/resnet20_grid_k64 --no-progress
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods oracle --k 128 --seeds 0,1,2 --out $OUT/resnet20_grid_k128 --no-progress ;;
    oracle_s0)  # an earlier quick look: the oracle alone, seed 0, its own folder (so its own D_r subset)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods oracle --k 16,1,64,128 --seeds 0 \
        --out $OUT/resnet20_oracle --no-progress ;;
    grid_k64)   # the large-k grid, one run per k so that the two can run side by side
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods neggrad,adv,l2ul --k 64 --seeds 0,1,2 \
        --out $OUT/resnet20_grid_k64 --no-progress ;;
    budget_k64)  # l2ul with the original code's budget (1000 passes = 5000 steps at k = 64), seed 2 of grid_k64
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods l2ul --k 64 --seeds 2 --max-steps 5000 \
        --out $OUT/resnet20_l2ul_k64_s2_max5000 --no-progress ;;
    grid_k128)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods neggrad,adv,l2ul --k 128 --seeds 0,1,2 \
        --out $OUT/resnet20_grid_k128 --no-progress ;;
    grid_nearest)  # l2ul's option beyond the paper: frozen batch norm + descent toward the nearest wrong class
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods neggrad,adv,l2ul --k 1,16 --seeds 0,1,2 \
        --bn freeze --forget-loss nearest --out $OUT/resnet20_grid_nearest_freeze --no-progress ;;
    nearest_k64)   # the same option at k = 64 (seed 0)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods adv,l2ul --k 64 --seeds 0 \
        --bn freeze --forget-loss nearest --out $OUT/resnet20_nearest_freeze_k64 --no-progress ;;
    continual)  # 8 successive requests of 16
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods neggrad,l2ul --requests 8 --k 16 --seeds 0 \
        --out $OUT/resnet20_continual --no-progress ;;
    continual_nearest)  # the same 8 requests with --bn freeze --forget-loss nearest
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods l2ul --requests 8 --k 16 --seeds 0 \
        --bn freeze --forget-loss nearest --out $OUT/resnet20_continual_nearest_freeze --no-progress ;;
    repair_proxy)  # the default method (0.4: Adam 1e-4, cosine) with 5,000 unlabeled test images as proxy
                   # (D_test: the other 5,000)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --proxy-test-split 5000 \
        --repair-logit-weight 0 --repair-stop-kl 0 --out $OUT/resnet20_repair_proxy_cosine --no-progress ;;
    repair_proxy_fast)  # a third of the repair steps at a larger rate: does the quality hold? (issue #12)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --proxy-test-split 5000 \
        --repair-steps 100 --repair-lr 3e-4 --repair-logit-weight 0 --repair-stop-kl 0 --out $OUT/resnet20_repair_proxy_fast --no-progress ;;
    repair_proxy_fast_logit)  # the same third of the steps with 0.4's logit term (the one change from repair_proxy_fast)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --proxy-test-split 5000 \
        --repair-steps 100 --repair-lr 3e-4 --repair-stop-kl 0 --out $OUT/resnet20_repair_proxy_fast_logit --no-progress ;;
    repair_free_fast_logit)  # the same 100 steps at 3e-4, data-free (the 1,024 synthesised images, from the cache)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 \
        --repair-steps 100 --repair-lr 3e-4 --repair-stop-kl 0 "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_free_fast_logit --no-progress ;;
    repair_relabel_proxy)  # the relabel task (random wrong targets), with proxy, k = 16 (forget phase without KD)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --proxy-test-split 5000 \
        --relabel-random --relabel-forget-kd 0 --repair-logit-weight 0 --repair-stop-kl 0 --out $OUT/resnet20_repair_relabel_proxy --no-progress ;;
    repair_relabel_proxy_kd)  # the same with 0.4's relabel_forget_kd 1 (distillation during the forget phase too)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --proxy-test-split 5000 \
        --relabel-random --repair-stop-kl 0 --relabel-forget-kd 1 --out $OUT/resnet20_repair_relabel_proxy_kd --no-progress ;;
    repair_relabel_free)  # the relabel task, data-free, k = 16 (0.4 defaults: relabel_forget_kd 1)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --relabel-random \
        --repair-stop-kl 0 "${OLD_SYNTH[@]}" --relabel-forget-kd 1 --out $OUT/resnet20_repair_relabel_free --no-progress ;;
    peers_k16)   # issue #14: every method on the same forget sets and D_r subset, k = 16 (oracle-like methods
                 # fine-tune on the remaining data outside the D_r subset)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair,l2ul,neggrad,random_labels,boundary_shrink,jit,amun,suli,oracle,scrub,salun,bad_teacher \
        --k 16 --seeds 0,1,2 --repair-logit-weight 0 --repair-stop-kl 0 "${OLD_SYNTH[@]}" --out $OUT/resnet20_peers_k16 --no-progress ;;
    peers_k128)  # the peers at k = 128. Not rerun, quoted from cells with the same forget sets, D_r subset and oracle
                 # pool (retain_eval_sha 3c4310d57e3a9e48): l2ul, neggrad and the oracle from grid_k128 (same config),
                 # repair (0.4 defaults) from repair_free_large and repair_proxy_large_logit; about 4 h of cells saved
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods random_labels,boundary_shrink,jit,amun,suli,salun,bad_teacher,scrub \
        --k 128 --seeds 0,1,2 --out $OUT/resnet20_peers_k128 --no-progress ;;
    repair_proxy_sgd)  # the same with 0.3's repair defaults (SGD 1e-3, constant)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --proxy-test-split 5000 \
        --repair-optimizer sgd --repair-lr 1e-3 --repair-schedule constant --repair-logit-weight 0 --repair-stop-kl 0 --out $OUT/resnet20_repair_proxy --no-progress ;;
    repair_free)   # the same, data-free: 512 proxy images synthesised once from the model's BN statistics
                   # (cached per model), plus 4,096 augmented copies
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --synth-images 512 \
        --repair-optimizer sgd --repair-lr 1e-3 --repair-schedule constant --repair-logit-weight 0 --repair-stop-kl 0 "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_free --no-progress ;;
    repair_free_adam)  # data-free with the repair optimiser the probe found better (Adam 1e-4)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --synth-images 512 \
        --repair-optimizer adam --repair-lr 1e-4 --repair-schedule constant --repair-logit-weight 0 --repair-stop-kl 0 "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_free_adam --no-progress ;;
    repair_free_cosine)  # data-free with the 0.4 defaults (Adam 1e-4, cosine; 1,024 synthesised images)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 \
        --repair-logit-weight 0 --repair-stop-kl 0 "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_free_cosine --no-progress ;;
    repair_free_k1)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 1 --seeds 0,1,2 \
        --repair-logit-weight 0 --repair-stop-kl 0 "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_free_k1 --no-progress ;;
    repair_proxy_large)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 64,128 --seeds 0,1,2 --repair-steps 300 --proxy-test-split 5000 \
        --repair-logit-weight 0 --repair-stop-kl 0 --out $OUT/resnet20_repair_proxy_large --no-progress ;;
    repair_free_large)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 64,128 --seeds 0,1,2 --repair-steps 300 \
        --repair-stop-kl 0 "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_free_large --no-progress ;;
    repair_continual_proxy)  # 8 successive requests of 16, each repaired toward the model before it
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --requests 8 --k 16 --seeds 0 --proxy-test-split 5000 \
        --repair-logit-weight 0 --repair-stop-kl 0 --out $OUT/resnet20_repair_continual_proxy --no-progress ;;
    repair_continual_free)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --requests 8 --k 16 --seeds 0 \
        "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_continual_free --no-progress ;;
    repair_continual_free_original)  # the same, each request repaired toward the original model (its outputs on
                                     # the synthesised images, computed once) instead of the model before it
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --requests 8 --k 16 --seeds 0 --repair-toward original \
        "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_continual_free_original --no-progress ;;
    unseen_k16)  # issue #13: the unseen task (as if never seen), 5,000 labeled test images as the reference (and
                 # the proxy); D_test and its loss AUC on the other 5,000
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --proxy-test-split 5000 --unseen \
        --repair-stop-kl 0 --out $OUT/resnet20_unseen_k16 --no-progress ;;
    unseen_k64)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 64 --seeds 0,1,2 --proxy-test-split 5000 --unseen \
        --repair-stop-kl 0 --out $OUT/resnet20_unseen_k64 --no-progress ;;
    repair_proxy_logit)  # 0.4's defaults, with the logit term: k = 16 with proxy
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --proxy-test-split 5000 \
        --repair-stop-kl 0 --out $OUT/resnet20_repair_proxy_logit --no-progress ;;
    repair_proxy_large_logit)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 64,128 --seeds 0,1,2 --repair-steps 300 --proxy-test-split 5000 \
        --repair-stop-kl 0 --out $OUT/resnet20_repair_proxy_large_logit --no-progress ;;
    repair_proxy_k128_long)  # the repair budget doubled at k = 128 (5a'': the 300 steps were spent in every cell)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 128 --seeds 0,1,2 --proxy-test-split 5000 \
        --repair-steps 600 --out $OUT/resnet20_repair_proxy_k128_long --no-progress ;;
    repair_free_k128_long)  # the same doubled budget, data-free (5b'': k = 128 lost 13.8 points with 300 steps)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 128 --seeds 0,1,2 \
        --repair-steps 600 "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_free_k128_long --no-progress ;;
    repair_free_k128_kd)  # data-free k = 128 with distillation during the forget phase (forget_kd 3; 5b'')
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 128 --seeds 0,1,2 --repair-steps 300 \
        --forget-kd 3 "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_free_k128_kd --no-progress ;;
    repair_free_k128_kd10)  # the same with forget_kd 10 (probe: D_r 78.65 after the forget phase, against 75.55 with 3)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 128 --seeds 0,1,2 --repair-steps 300 \
        --forget-kd 10 "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_free_k128_kd10 --no-progress ;;
    repair_free_k128_kd10_long)  # forget_kd 10 with the doubled repair budget (the kd rows spent their 300 steps)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 128 --seeds 0,1,2 \
        --forget-kd 10 --repair-steps 600 "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_free_k128_kd10_long --no-progress ;;
    repair_free_k128_kd10_long_synth400_cosine)  # the same with a better synthesis: 400 pixel steps per batch on a
                                                 # cosine schedule (benchmarks/synthesis_probe.py)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 128 --seeds 0,1,2 --forget-kd 10 --repair-steps 600 \
        --synth-steps 400 --synth-schedule cosine --out $OUT/resnet20_repair_free_k128_kd10_long_synth400_cosine --no-progress ;;
    repair_free_synth400_cosine)  # repair_free_logit (the 0.4 data-free default row at k = 16) with the better synthesis
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --synth-steps 400 --synth-schedule cosine \
        --repair-stop-kl 0 --out $OUT/resnet20_repair_free_synth400_cosine --no-progress ;;
    repair_continual_free_synth400_cosine)  # repair_continual_free with the better synthesis (of the original, cached)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --requests 8 --k 16 --seeds 0 --synth-steps 400 \
        --synth-schedule cosine --out $OUT/resnet20_repair_continual_free_synth400_cosine --no-progress ;;
    repair_free_logit)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 \
        --repair-stop-kl 0 "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_free_logit --no-progress ;;
    repair_continual_proxy_logit)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --requests 8 --k 16 --seeds 0 --proxy-test-split 5000 \
        --repair-stop-kl 0 --out $OUT/resnet20_repair_continual_proxy_logit --no-progress ;;
    repair_continual_free_kd)  # the data-free continual chain with distillation during each forget phase (5c)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --requests 8 --k 16 --seeds 0 \
        --forget-kd 3 "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_continual_free_kd --no-progress ;;
    repair_free_kd)  # data-free k = 16 with forget_kd 3 (5b)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 \
        --forget-kd 3 "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_free_kd --no-progress ;;
    repair_free_k1_kd)  # data-free k = 1 with forget_kd 3 (5b)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 1 --seeds 0,1,2 \
        --forget-kd 3 --out $OUT/resnet20_repair_free_k1_kd --no-progress ;;
    repair_relabel_free_kd3)  # data-free relabel with a stronger forget-phase distillation (5a')
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --relabel-random \
        --relabel-forget-kd 3 "${OLD_SYNTH[@]}" --out $OUT/resnet20_repair_relabel_free_kd3 --no-progress ;;
    repair_relabel_free_synth400_cosine)  # repair_relabel_free with 0.4.0's defaults (the better synthesis,
                                          # relabel_forget_kd 1, the small-KL stop on)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --relabel-random \
        --synth-steps 400 --synth-schedule cosine --relabel-forget-kd 1 --out $OUT/resnet20_repair_relabel_free_synth400_cosine --no-progress ;;
    repair_relabel_free_kd3_synth400_cosine)  # repair_relabel_free_kd3 with the better synthesis
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --relabel-random \
        --relabel-forget-kd 3 --synth-steps 400 --synth-schedule cosine \
        --out $OUT/resnet20_repair_relabel_free_kd3_synth400_cosine --no-progress ;;
    repair_free_long_synth400_cosine)  # repair_free_synth400_cosine with the repair budget doubled (its 300
                                       # steps were spent in 2 of 3 cells)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --repair-steps 600 \
        --synth-steps 400 --synth-schedule cosine --out $OUT/resnet20_repair_free_long_synth400_cosine --no-progress ;;
    repair_continual_free_long_synth400_cosine)  # the data-free chain with the better synthesis and 600 repair steps
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --requests 8 --k 16 --seeds 0 --repair-steps 600 \
        --synth-steps 400 --synth-schedule cosine --out $OUT/resnet20_repair_continual_free_long_synth400_cosine --no-progress ;;
    repair_continual_free_original_synth400_cosine)  # repair_continual_free_original with the better synthesis
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --requests 8 --k 16 --seeds 0 --repair-toward original \
        --synth-steps 400 --synth-schedule cosine --out $OUT/resnet20_repair_continual_free_original_synth400_cosine --no-progress ;;
    repair_continual_free_original_seeds12)  # seeds 1 and 2 of the chain above (continual takes one seed a folder)
      for s in 1 2; do
        l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --requests 8 --k 16 --seeds $s --repair-toward original \
          --out $OUT/resnet20_repair_continual_free_original_synth400_cosine_s$s --no-progress
      done ;;
    repair_continual_proxy_logit_seeds12)  # seeds 1 and 2 of repair_continual_proxy_logit
      for s in 1 2; do
        l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --requests 8 --k 16 --seeds $s --proxy-test-split 5000 \
          --repair-stop-kl 0 --out $OUT/resnet20_repair_continual_proxy_logit_s$s --no-progress
      done ;;
    head_edit_proxy)  # phase 1 the closed-form head edit, no repair (--forget-phase head_edit --repair-steps 0), proxy;
                      # k = 16 and k = 64, 128 in two folders, as repair_proxy_logit and repair_proxy_large_logit
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --proxy-test-split 5000 \
        --forget-phase head_edit --repair-steps 0 --out $OUT/resnet20_head_edit_proxy --no-progress
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 64,128 --seeds 0,1,2 --proxy-test-split 5000 \
        --forget-phase head_edit --repair-steps 0 --out $OUT/resnet20_head_edit_proxy_large --no-progress ;;
    head_edit_free)   # the same, data-free (0.4.0's synthesis, from the cache), as repair_free_synth400_cosine
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 \
        --forget-phase head_edit --repair-steps 0 --out $OUT/resnet20_head_edit_free --no-progress
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 64,128 --seeds 0,1,2 \
        --forget-phase head_edit --repair-steps 0 --out $OUT/resnet20_head_edit_free_large --no-progress ;;
    repair_relabel_proxy_kd3)  # repair_relabel_proxy_kd with relabel_forget_kd 3 (data-free, 3 beats 1: 5a')
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 16 --seeds 0,1,2 --proxy-test-split 5000 \
        --relabel-random --relabel-forget-kd 3 --repair-stop-kl 0 --out $OUT/resnet20_repair_relabel_proxy_kd3 --no-progress ;;
    repair_free_k128_synth400_cosine)  # data-free k = 128 with the 0.4.0 defaults alone (the better synthesis)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 128 --seeds 0,1,2 --repair-steps 300 \
        --synth-steps 400 --synth-schedule cosine --out $OUT/resnet20_repair_free_k128_synth400_cosine --no-progress ;;
    repair_free_k128_long_synth400_cosine)  # the same with the repair budget doubled (--repair-steps 600, no forget_kd):
                                            # the evidence for a default budget that grows with k
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 128 --seeds 0,1,2 --repair-steps 600 \
        --out $OUT/resnet20_repair_free_k128_long_synth400_cosine --no-progress ;;
    repair_free_k64_synth400_cosine)  # data-free k = 64 with the 0.4.0 defaults
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --k 64 --seeds 0,1,2 \
        --synth-steps 400 --synth-schedule cosine --out $OUT/resnet20_repair_free_k64_synth400_cosine --no-progress ;;
    repair_continual_free_long_synth800)  # the data-free chain toward the model before each request (the issue's
                                          # design) with 600 repair steps and 800 synthesis steps (benchmarks/chain_probe.py)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --requests 8 --k 16 --seeds 0 --repair-steps 600 \
        --synth-steps 800 --out $OUT/resnet20_repair_continual_free_long_synth800 --no-progress ;;
    repair_continual_free_long_nostopkl)  # the 600-step data-free chain toward the model before each request with
                                          # the small-KL stop off (it ended requests 3 and 6-8 of that chain early)
      l2ul bench "${MODEL[@]}" "${DATA[@]}" --methods repair --requests 8 --k 16 --seeds 0 --repair-steps 600 \
        --repair-stop-kl 0 --out $OUT/resnet20_repair_continual_free_long_nostopkl --no-progress ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
# Extra (not in the default steps): k = 1 with batch norm frozen, to compare with the grid's bn=train rows:
#   l2ul bench --arch resnet20 --weights $SHARED/datasets/pretrained/cifar10_resnet20-12fca82f.th \
#     --dataset cifar10-jpeg:$SHARED/datasets/cifar10_jpeg.npz --methods neggrad,adv,l2ul --k 1 --seeds 0,1,2 \
#     --bn freeze --out benchmarks/results/resnet20_k1_bn_freeze --no-progress
