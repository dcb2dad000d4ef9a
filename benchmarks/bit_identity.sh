#!/usr/bin/env bash
# Bit-identity check of a refactor (issue #10): the demo's three models and one ResNet-20 cell per paper method
# (k = 16, --forget-random 16 --seed 0, --max-steps 400, --keep-unconverged), written with the l2ul source
# tree SRC (e.g. a `git worktree` of the commit before the change, then of the one after); compare the
# sha256.txt of the two OUT folders. One torch thread: results depend on the thread count.
# Usage: bash benchmarks/bit_identity.sh SRC_DIR OUT_DIR [SHARED_DIR]
set -u
SRC=$1; OUT=$2; SHARED=${3:-../shared}; mkdir -p "$OUT"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=$SRC L2UL_CACHE_DIR=$OUT/cache
run() { python -c 'import sys; from l2ul.cli import main; sys.exit(main())' "$@"; }
run demo --out-dir "$OUT/demo" > "$OUT/demo.log" 2>&1
for m in neggrad adv l2ul oracle; do
  run unlearn --arch resnet20 --weights "$SHARED/datasets/pretrained/cifar10_resnet20-12fca82f.th" \
    --dataset "cifar10-jpeg:$SHARED/datasets/cifar10_jpeg.npz" --forget-random 16 --seed 0 --method $m \
    --keep-unconverged --retain-eval-size 500 --max-steps 400 --quiet --out "$OUT/r20_$m.safetensors" \
    > "$OUT/$m.log" 2>&1
  echo "$m rc=$?" >> "$OUT/rc.txt"
done
(cd "$OUT" && sha256sum demo/*.safetensors r20_*.safetensors > sha256.txt)
