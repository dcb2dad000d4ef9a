"""Does a repair after the closed-form head edit help? D_r and D_test after ``repair --forget-phase head_edit``
with 0, 50 or 100 repair steps (several rates), with the head trainable or frozen during the repair, beside the
default SGD forget phase with the same repair budgets, on the shared ResNet-20 (k = 16, seed 0, the bench's
proxy split: 5,000 unlabeled test images; D_r on 2,000 remaining training images, D_test on 2,000 test images
outside the proxy).

    OMP_NUM_THREADS=1 python benchmarks/head_edit_probe.py --shared ../shared
"""
import argparse
import time

import numpy as np

import l2ul.methods.repair as repair_module
from l2ul import UnlearnConfig, unlearn
from l2ul.bench.proxy import proxy_images, split_test
from l2ul.data import load_dataset, stack
from l2ul.evaluation import predict
from l2ul.loading import load_model_from
from l2ul.requests import random_forget_ids

# (forget phase, repair steps, repair lr, head frozen during the repair)
VARIANTS = [("head_edit", 0, 1e-4, False), ("head_edit", 50, 1e-4, False), ("head_edit", 100, 1e-4, False),
            ("head_edit", 50, 1e-5, False), ("head_edit", 100, 3e-5, False), ("head_edit", 100, 1e-4, True),
            ("sgd", 0, 1e-4, False), ("sgd", 100, 1e-4, False), ("sgd", 100, 3e-4, False)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    b = load_dataset(f"cifar10-jpeg:{args.shared}/datasets/cifar10_jpeg.npz")
    weights = f"{args.shared}/datasets/pretrained/cifar10_resnet20-12fca82f.th"
    proxy_idx, eval_idx = split_test(b, 5000)
    proxy = proxy_images(b, proxy_idx)
    test = stack(b.test, [int(i) for i in np.random.default_rng(0).choice(eval_idx, 2000, replace=False)])
    ids = random_forget_ids(args.k, n_train=b.n_train, seed=args.seed)
    retain = b.retain_indices(ids)
    d_r = stack(b.train, [int(i) for i in np.random.default_rng(1).choice(retain, 2000, replace=False)])
    xf, yf = b.stack_train(ids)

    def scores(net):
        return [100 * predict(net, d).preds.eq(d[1]).float().mean().item() for d in (d_r, test)]

    net = load_model_from(arch="resnet20", weights=weights)
    print(f"k = {args.k}, seed {args.seed}; original: D_r {scores(net)[0]:.2f}, D_test {scores(net)[1]:.2f}\n")
    print("| forget phase | repair steps | repair lr | head during the repair | D_f | D_r (2,000) | D_test (2,000) | s |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    edit = repair_module._apply_head_edit
    for phase, steps, lr, frozen in VARIANTS:
        def edit_then_freeze(ctx, _edit=edit):
            _edit(ctx)
            for p in ctx.model.net.linear.parameters():
                p.requires_grad_(False)

        repair_module._apply_head_edit = edit_then_freeze if frozen else edit
        try:
            t0 = time.perf_counter()
            net = load_model_from(arch="resnet20", weights=weights)
            cfg = UnlearnConfig(seed=args.seed, forget_phase=phase, repair_steps=steps, repair_lr=lr, repair_stop_kl=0)
            r = unlearn(net, xf, yf, data={"proxy": proxy}, config=cfg, progress=False)
        finally:
            repair_module._apply_head_edit = edit
        d_r_after, d_t_after = scores(r.model)
        print(f"| {phase} | {steps} | {lr:g} | {'frozen' if frozen else 'trained'} | {100 * r.forget_accuracy:.1f} | "
              f"{d_r_after:.2f} | {d_t_after:.2f} | {time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
