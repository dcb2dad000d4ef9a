"""Does distilling during the forget phase (``forget_kd``) leave the repair less to undo, data-free?

The data-free rows that miss their targets in BENCHMARKS.md (k = 128; continual requests) lose most of their
accuracy in the forget phase: at k = 128 it takes ~140 SGD steps, and at a continual run's second request 5
steps on the once-repaired model took D_r from 86.65 to 37.90 (benchmarks/results/continual_repair_probe.md),
after which the synthetic-proxy repair plateaus. This probe runs the forget phase alone (``repair_steps 0``)
with ``forget_kd`` 0 (the default), 1 and 3, on the data-free proxy synthesised once from the original (from
the cache), and prints D_r on 2,000 remaining training images outside every forget set used here:
(a) k = 128, ``random_forget_ids(128, seed=0)``, engine seed 0 (the bench's cell); (b) a continual run's
request 2 (``continual_forget_sets(n, 8, 16, 0)``, seed 1002) on request 1's model (default method, seed 1001,
as the bench runs it).

    OMP_NUM_THREADS=1 python benchmarks/forget_kd_probe.py --shared ../shared
"""
import argparse
import time

import numpy as np

from l2ul import UnlearnConfig, unlearn
from l2ul.bench import continual_forget_sets
from l2ul.data import load_dataset, stack
from l2ul.engine import prepare_ingredients
from l2ul.evaluation import predict
from l2ul.loading import load_model_from
from l2ul.requests import random_forget_ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--weights", default="0,1,3", help="forget_kd values, comma-separated")
    ap.add_argument("--parts", default="ab")
    args = ap.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    b = load_dataset(f"cifar10-jpeg:{args.shared}/datasets/cifar10_jpeg.npz")
    net = load_model_from(arch="resnet20", weights=f"{args.shared}/datasets/pretrained/cifar10_resnet20-12fca82f.th")
    net.eval()
    k128 = random_forget_ids(128, n_train=b.n_train, seed=0)
    sets = continual_forget_sets(b.n_train, 8, 16, 0)
    outside = np.setdiff1d(np.arange(b.n_train), np.concatenate([k128] + sets))
    x_r, y_r = stack(b.train, [int(i) for i in np.random.default_rng(1).choice(outside, 2000, replace=False)])
    cfg = UnlearnConfig()

    def d_r(model) -> float:
        return 100 * predict(model, (x_r, y_r)).preds.eq(y_r).float().mean().item()

    xf, yf = b.stack_train(k128)
    proxy = prepare_ingredients(net, xf, yf, ["proxy"], config=cfg)["proxy"]
    print(f"proxy: {proxy.source}")
    print("| case | forget_kd | forget steps | status | D_r (2,000) after the forget phase | s |")
    print("|---|---:|---:|---|---:|---:|")
    print(f"| original | | | | {d_r(net):.2f} | |", flush=True)
    if "a" in args.parts:
        for w in weights:
            t0 = time.perf_counter()
            r = unlearn(net, xf, yf, config=cfg.replace(seed=0, forget_kd=w, repair_steps=0),
                        ingredients={"proxy": proxy}, progress=False)
            print(f"| k = 128, seed 0 | {w:g} | {r.steps} | {r.status} | {d_r(r.model):.2f} | "
                  f"{time.perf_counter() - t0:.0f} |", flush=True)
    if "b" in args.parts:
        (x1, y1), (x2, y2) = b.stack_train(sets[0]), b.stack_train(sets[1])
        t0 = time.perf_counter()
        r1 = unlearn(net, x1, y1, config=cfg.replace(seed=1001), ingredients={"proxy": proxy}, progress=False)
        print(f"| continual request 1 (full default run) | 0 | {r1.steps} | {r1.status} | {d_r(r1.model):.2f} "
              f"(after its repair) | {time.perf_counter() - t0:.0f} |", flush=True)
        for w in weights:
            t0 = time.perf_counter()
            r = unlearn(r1.model, x2, y2, config=cfg.replace(seed=1002, forget_kd=w, repair_steps=0),
                        ingredients={"proxy": proxy}, data={"keep_forgotten": (x1, y1)}, progress=False)
            print(f"| continual request 2 | {w:g} | {r.steps} | {r.status} | {d_r(r.model):.2f} | "
                  f"{time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
