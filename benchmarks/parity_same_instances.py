"""Parity with the original L2UL code on the forget set *it* draws, plus ablations that explain the gap.

The original CIFAR-10 script draws its forget set as ``torch.manual_seed(seed); torch.randperm(50000)[:k]``
over the training set in torchvision/ImageFolder order. The JPEG copy in ``../shared/datasets`` stores the
training images in sorted path order (class-grouped), which is also ImageFolder's order, so on this copy
that draw names the same 16 images the issue's reference run used, *provided* that run read the copy as an
ImageFolder tree (``materialize_cifar10.py``); that is an assumption, stated in BENCHMARKS.md.

Rows (all on the same 16 instances, one shared adversarial set, the paper's CIFAR-10 recipe, bn=train):

* ``neggrad``, ``adv``, ``l2ul``: l2ul's methods as shipped.
* ``l2ul, original MAS``: l2ul with the original code's importance (|gradient of the batch-mean logit norm|,
  train-mode BN on a model copy) passed in through ``importance=``; isolates our per-sample MAS (B6).
* ``adv_forgetfirst`` / ``l2ul_forgetfirst``: the forget batch goes through the model *before* the adversarial
  batch (l2ul 0.1's order; the engine now forwards the adversarial batch first, as the original loop does).
  With train-mode BN each pass updates the running statistics, so the order changes the evaluated model.

Usage:  python benchmarks/parity_same_instances.py --shared ../shared [--out DIR] [--rows a,b,...]
        [--engine-seed S]   (other adversarial targets/PGD starts/batch orders on the same 16 instances)
Prints a table and writes ``DIR/results.json``.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

import l2ul
from l2ul.bench import eval_splits
from l2ul.evaluation import predict
from l2ul.importance import ImportanceWeights, normalize_importance
from l2ul.methods import get_method

ROWS = ["neggrad", "adv", "l2ul", "l2ul_origmas", "adv_forgetfirst", "l2ul_forgetfirst"]


def original_mas(model, xf, batch_size=32):
    """The original code's estimator: train-mode BN on a copy, |grad of the batch-mean ||f(x)||_2| per batch,
    summed over batches weighted by batch size (cleared between batches here; at k <= 32 there is one batch
    and the original's missing zero_grad makes no difference)."""
    m = copy.deepcopy(model).train()
    params = {n: p for n, p in m.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for s in range(0, xf.shape[0], batch_size):
        xb = xf[s:s + batch_size]
        loss = m(xb).norm(p=2, dim=1).mean()
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (n, _), g in zip(params.items(), grads):
            if g is not None:
                total[n] += g.abs() * xb.shape[0]
    return {n: t / xf.shape[0] for n, t in total.items()}


def _forget_first(base):
    """``base``'s loss with the forget batch forwarded before the auxiliary batch (l2ul 0.1's order; the
    engine now follows the original code: auxiliary batch first)."""

    class ForgetFirst(base):
        name = f"{base.name}_forgetfirst"

        def loss(self, model, batch, ctx, forward):
            return super().loss(model, batch, ctx, lambda m, xf, xa: (m(xf), m(xa)))

    return ForgetFirst


AdvForgetFirst = _forget_first(type(get_method("adv")))
L2ULForgetFirst = _forget_first(type(get_method("l2ul")))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0, help="seed of the original code's forget draw")
    ap.add_argument("--engine-seed", type=int, default=None,
                    help="l2ul's seed (adversarial targets, PGD start, batch order); default --seed")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--out", default="benchmarks/results/parity_same_instances")
    args = ap.parse_args(argv)
    rows = [r for r in args.rows.split(",") if r]
    bad = [r for r in rows if r not in ROWS]
    if bad:
        ap.error(f"unknown rows {bad}; choose from {ROWS}")
    shared = Path(args.shared)
    model = l2ul.import_state_dict("resnet20", shared / "datasets/pretrained/cifar10_resnet20-12fca82f.th")
    bundle = l2ul.load_dataset(f"cifar10-jpeg:{shared / 'datasets/cifar10_jpeg.npz'}")
    torch.manual_seed(args.seed)
    ids = sorted(torch.randperm(bundle.n_train)[:args.k].tolist())     # the original script's draw
    retain_eval, _ = eval_splits(bundle.n_train, [ids], 10000)
    xf, yf = bundle.stack_train(ids)
    xr, yr = bundle.stack_train(retain_eval)
    from l2ul.data import stack
    xt, yt = stack(bundle.test, list(range(bundle.n_test)))

    def acc(m, x, y):
        p = predict(m, (x, y), batch_size=1024)
        return 100.0 * float((p.logits.argmax(1) == p.labels).float().mean())

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    before = {"D_f": acc(model, xf, yf), "D_r": acc(model, xr, yr), "D_test": acc(model, xt, yt)}
    print(f"forget ids {ids}\nlabels {yf.tolist()}\nbefore: " + ", ".join(f"{k} {v:.2f}" for k, v in before.items()),
          flush=True)
    engine_seed = args.seed if args.engine_seed is None else args.engine_seed
    cfg = l2ul.UnlearnConfig(seed=engine_seed)
    t0 = time.perf_counter()
    from l2ul.attacks import make_adversarial_set
    adv = make_adversarial_set(model, xf, yf, 10, cfg)
    print(f"adversarial set: {len(adv)} examples in {adv.seconds:.1f}s", flush=True)
    imp_orig = ImportanceWeights(normalize_importance(original_mas(model, xf)))
    methods = {"adv_forgetfirst": AdvForgetFirst(), "l2ul_forgetfirst": L2ULForgetFirst()}
    results = {"forget_ids": ids, "labels": yf.tolist(), "engine_seed": engine_seed, "before": before, "rows": {}}
    path = out / "results.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("forget_ids") == ids and old.get("engine_seed", args.seed) == engine_seed:
            results["rows"] = old.get("rows", {})
    for r in rows:
        if r in results["rows"]:
            print(f"{r}: already in {path}, skipped", flush=True)
            continue
        method = methods.get(r, {"l2ul_origmas": "l2ul"}.get(r, r))
        kw = {}
        if r != "neggrad":
            kw["adversarial"] = adv
        if r == "l2ul_origmas":
            kw["importance"] = imp_orig
        res = l2ul.unlearn(model, xf, yf, method=method, config=cfg, **kw)
        row = {"status": res.status, "steps": res.steps, "t_opt": res.timings["optimization"],
               "D_f": 100 * res.forget_accuracy, "D_r": acc(res.model, xr, yr), "D_test": acc(res.model, xt, yt)}
        results["rows"][r] = row
        path.write_text(json.dumps(results, indent=1))
        print(f"{r}: {row}", flush=True)
    print("\n| row | status | steps | D_f | D_r | D_test |\n|---|---|---:|---:|---:|---:|")
    print(f"| before | | | {before['D_f']:.1f} | {before['D_r']:.1f} | {before['D_test']:.1f} |")
    for r, row in results["rows"].items():
        print(f"| {r} | {row['status']} | {row['steps']} | {row['D_f']:.1f} | {row['D_r']:.1f} | {row['D_test']:.1f} |")
    print(f"total {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
