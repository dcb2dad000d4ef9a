#!/usr/bin/env bash
# Bit-identity check of a refactor (issue #10): the demo's three models and one ResNet-20 cell per paper method
# (k = 16, --forget-random 16 --seed 0, --max-steps 400, --keep-unconverged), written with the l2ul source
# tree SRC (e.g. a `git worktree` of the commit before the change, then of the one after); compare the
# weights_sha256.txt (the weights) and sha256.txt (the files) of the two OUT folders. One torch thread: results depend on the thread count.
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
# the weights alone (a model file also records metadata, e.g. the l2ul version and class names, which may
# change between versions while the weights stay the same): sha256 over every tensor's name, dtype and bytes
(cd "$OUT" && python - demo/*.safetensors r20_*.safetensors > weights_sha256.txt <<'PY'
import hashlib, sys
from safetensors import safe_open
for path in sys.argv[1:]:
    h = hashlib.sha256()
    with safe_open(path, framework="pt") as f:
        for key in sorted(f.keys()):
            t = f.get_tensor(key).contiguous()
            h.update(key.encode()); h.update(str(t.dtype).encode()); h.update(t.numpy().tobytes())
    print(h.hexdigest(), path)
PY
)
