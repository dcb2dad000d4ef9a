"""JiT (method ``jit``) on the shared ResNet-20 at k = 16, seed 0, under a few learning rates and noise levels.

In the peers benchmark (BENCHMARKS.md section 8) ``jit`` diverged: non-finite outputs after 28 steps. Does it
with other settings? Each row: one ``jit`` run (its class attributes ``jit_lr`` and ``jit_sigma`` set, the
harness's stopping rule: until no forget instance is predicted as its label, at most 300 steps), its status,
steps, the forget accuracy every third step, and D_r on 2,000 remaining training images when it finished.

    OMP_NUM_THREADS=1 python benchmarks/jit_probe.py ../shared
"""
import sys
import time

import numpy as np

from l2ul import UnlearnConfig, unlearn
from l2ul.data import load_dataset, stack
from l2ul.evaluation import predict
from l2ul.loading import load_model_from
from l2ul.methods import get_method
from l2ul.requests import random_forget_ids

SETTINGS = [(3e-4, 0.2), (1e-4, 0.2), (3e-4, 0.05), (3e-5, 0.2)]     # (jit_lr, jit_sigma); the first: l2ul's


def main(shared: str) -> None:
    b = load_dataset(f"cifar10-jpeg:{shared}/datasets/cifar10_jpeg.npz")
    net = load_model_from(arch="resnet20", weights=f"{shared}/datasets/pretrained/cifar10_resnet20-12fca82f.th")
    ids = random_forget_ids(16, n_train=b.n_train, seed=0)
    xf, yf = b.stack_train(ids)
    pick = np.random.default_rng(1).choice(b.retain_indices(ids), 2000, replace=False)
    x_r, y_r = stack(b.train, [int(i) for i in pick])
    jit = type(get_method("jit"))
    defaults = jit.jit_lr, jit.jit_sigma
    print("| jit_lr | jit_sigma | status | steps | message | D_f every 3rd step | D_r (2,000) | s |")
    print("|---:|---:|---|---:|---|---|---:|---:|")
    try:
        for lr, sigma in SETTINGS:
            jit.jit_lr, jit.jit_sigma = lr, sigma
            t, hist = time.perf_counter(), []
            r = unlearn(net, xf, yf, method="jit", config=UnlearnConfig(seed=0, max_steps=300), progress=False,
                        callback=lambda _step, score, h=hist: h.append(score))
            d_r = ("-" if r.status == "diverged" else
                   f"{100 * predict(r.model, (x_r, y_r)).preds.eq(y_r).float().mean().item():.2f}")
            print(f"| {lr:g} | {sigma:g} | {r.status} | {r.steps} | {r.message} | "
                  f"{' '.join(f'{s:.2f}' for s in hist[::3])} | {d_r} | {time.perf_counter() - t:.0f} |", flush=True)
    finally:
        jit.jit_lr, jit.jit_sigma = defaults


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared")
