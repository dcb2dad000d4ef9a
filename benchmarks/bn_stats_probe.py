"""Where does the forgetting live? Weights versus BatchNorm running statistics, with train-mode BN.

For each seed: unlearn k random training instances of the real CIFAR-10 ResNet-20 (paper recipe, bn=train),
then evaluate the unlearned model twice: as returned (its running statistics were updated by every
training-mode forward pass on forget and adversarial batches) and with the *original* model's running
statistics put back (the unlearned weights kept). If the forget instances are classified correctly again
once the statistics are restored, the request was met by corrupting the statistics, not by changing what
the weights encode, and anyone who recalibrates BN on clean data undoes it.

Usage: python benchmarks/bn_stats_probe.py --shared ../shared [--k 1] [--seeds 0,1,2] [--methods neggrad,l2ul]
       [--retain-eval-size 2000]
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import l2ul
from l2ul.bench import eval_splits
from l2ul.evaluation import predict
from l2ul.requests import random_forget_ids


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default="neggrad,l2ul")
    ap.add_argument("--retain-eval-size", type=int, default=2000)
    args = ap.parse_args(argv)
    shared = Path(args.shared)
    model = l2ul.import_state_dict("resnet20", shared / "datasets/pretrained/cifar10_resnet20-12fca82f.th")
    bundle = l2ul.load_dataset(f"cifar10-jpeg:{shared / 'datasets/cifar10_jpeg.npz'}")
    stats = {n: t.clone() for n, t in model.state_dict().items() if "running_" in n}

    def acc(m, x, y):
        p = predict(m, (x, y), batch_size=1000)
        return 100.0 * float((p.logits.argmax(1) == p.labels).float().mean())

    print("| method | k | seed | status | steps | D_r as returned | D_f as returned | D_r, original BN stats "
          "| D_f, original BN stats |\n|---|---:|---:|---|---:|---:|---:|---:|---:|", flush=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        ids = random_forget_ids(args.k, n_train=bundle.n_train, seed=seed)
        retain_eval, _ = eval_splits(bundle.n_train, [ids], args.retain_eval_size)
        xf, yf = bundle.stack_train(ids)
        xr, yr = bundle.stack_train(retain_eval)
        for method in args.methods.split(","):
            res = l2ul.unlearn(model, xf, yf, method=method, config=l2ul.UnlearnConfig(seed=seed, bn="train"))
            restored = res.model
            a_r, a_f = acc(restored, xr, yr), acc(restored, xf, yf)
            with torch.no_grad():
                for n, t in restored.state_dict().items():
                    if n in stats:
                        t.copy_(stats[n])
            print(f"| {method} | {args.k} | {seed} | {res.status} | {res.steps} | {a_r:.1f} | {a_f:.1f} | "
                  f"{acc(restored, xr, yr):.1f} | {acc(restored, xf, yf):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
