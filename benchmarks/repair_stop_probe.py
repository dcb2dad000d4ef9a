"""How fast does the repair get there? D_r and the held-out proxy KL along the repair, on the shared ResNet-20.

For each k given (seed 0; the bench's proxy split: 5,000 unlabeled test images, or ``--data-free``: the
synthesised proxy), one ``repair`` run with the 0.4 defaults (or ``--repair-steps N``) and its plateau rule
off, and at each of the stopping criterion's checks (every ``repair_check_every`` = 25 steps): the KL from
the original on the repair's held-out proxy slice as the criterion reads it (what a stopping rule may read),
D_r on a fixed 2,000-image sample of the remaining training data and D_test on 2,000 of the test images the
proxy split leaves out (what it may not). The question it answers: does a small held-out KL, not only a flat
one, tell when the repair is done (issue #12: the repair spends 275-300 steps on a k = 1 model one step away from the original)?

    OMP_NUM_THREADS=1 python benchmarks/repair_stop_probe.py --shared ../shared --ks 1,16 [--data-free]
        [--forget-phase head_edit] [--repair-steps N] [--repair-lr LR]
"""
import argparse
import time

import numpy as np

from l2ul import UnlearnConfig, unlearn
from l2ul.bench.proxy import proxy_images, split_test
from l2ul.data import load_dataset, stack
from l2ul.evaluation import predict
from l2ul.loading import load_model_from
from l2ul.methods.repair import _KLPlateau
from l2ul.requests import random_forget_ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--ks", default="1,16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repair-steps", type=int, default=300)
    ap.add_argument("--forget-phase", default="sgd", choices=("sgd", "head_edit"),
                    help="phase 1 of the repair (UnlearnConfig.forget_phase)")
    ap.add_argument("--repair-lr", type=float, default=None, help="the repair's learning rate (default: the config's)")
    ap.add_argument("--data-free", dest="proxy", action="store_false",
                    help="no proxy: the data-free repair (synthesised images, from the cache when made before)")
    args = ap.parse_args()
    b = load_dataset(f"cifar10-jpeg:{args.shared}/datasets/cifar10_jpeg.npz")
    weights = f"{args.shared}/datasets/pretrained/cifar10_resnet20-12fca82f.th"
    proxy_idx, eval_idx = split_test(b, 5000)
    proxy = proxy_images(b, proxy_idx) if args.proxy else None
    rng = np.random.default_rng(0)
    x_test, y_test = stack(b.test, [int(i) for i in rng.choice(eval_idx, 2000, replace=False)])
    print("| k | repair step | held-out KL | held-out agreement | D_r (2,000) | D_test (2,000) | s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for k in [int(v) for v in args.ks.split(",")]:
        probe(b, weights, k, args, proxy, (x_test, y_test))


def probe(b, weights, k, args, proxy, test) -> None:
    ids = random_forget_ids(k, n_train=b.n_train, seed=args.seed)
    retain = b.retain_indices(ids)
    x_r, y_r = stack(b.train, [int(i) for i in np.random.default_rng(1).choice(retain, 2000, replace=False)])
    xf, yf = b.stack_train(ids)
    net = load_model_from(arch="resnet20", weights=weights)
    net.eval()

    def scores():
        return [100 * predict(net, d).preds.eq(d[1]).float().mean().item() for d in ((x_r, y_r), test)]

    d_r, d_t = scores()
    print(f"| {k} | original | | | {d_r:.2f} | {d_t:.2f} | |", flush=True)
    t0 = time.perf_counter()
    original_call = _KLPlateau.__call__

    def traced(self, step, ctx):          # the real criterion's check, with D_r and D_test beside it
        stop = original_call(self, step, ctx)
        if self.trace and self.trace[-1]["step"] == step:
            row = self.trace[-1]
            net.eval()
            d_r, d_t = scores()
            print(f"| {k} | {step} | {row['heldout_kl']:.5f} | {100 * row['heldout_agreement']:.1f} | "
                  f"{d_r:.2f} | {d_t:.2f} | {time.perf_counter() - t0:.0f} |", flush=True)
        return stop

    _KLPlateau.__call__ = traced
    # the plateau rule off (a KL that grows a billion-fold at one check), so that every check is seen
    extra = {} if args.repair_lr is None else {"repair_lr": args.repair_lr}
    cfg = UnlearnConfig(seed=args.seed, repair_steps=args.repair_steps, repair_tol=-1e9,
                        forget_phase=args.forget_phase, **extra)
    try:
        r = unlearn(net, xf, yf, data={"proxy": proxy} if proxy is not None else {}, config=cfg, inplace=True,
                    progress=False)
    finally:
        _KLPlateau.__call__ = original_call
    print(f"| {k} | end: {r.status}, {r.steps} steps ({r.message}) | | | | | {time.perf_counter() - t0:.0f} |",
          flush=True)


if __name__ == "__main__":
    main()
