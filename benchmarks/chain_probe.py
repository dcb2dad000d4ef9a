"""The first requests of the data-free continual chain under a variant: a weight anchor, a synthesis setting.

The data-free chain of BENCHMARKS.md 5c (8 requests of 16 on the shared ResNet-20, each repaired toward the
model before it on images synthesised once from the original) loses 9.2 points with 600 repair steps: the
repair brings the model back on the synthetic images faster than on real data, so what the forget phase
changed off the synthetic images stays. ``--anchors`` adds ``anchor * sum((theta - theta_before)^2)`` to the
repair loss (``theta_before``: the weights before the request, i.e. the teacher's) and runs the first
``--requests`` requests of the bench's chain (the same forget sets and engine seeds, ``keep_forgotten`` as the
bench passes it) once per anchor weight, printing D_r on 2,000 remaining training images (outside all 8
requests), the squared weight change of each request and the steps. The anchor is monkeypatched here, not an
option of l2ul: it becomes one only if it helps (it did not: benchmarks/results/chain_anchor_probe.md).
``--synth-steps`` / ``--synth-images`` change the synthesis of the proxy (made once from the original model,
cached like l2ul's own), to see whether better or more synthesised images slow the drift.

    OMP_NUM_THREADS=1 python benchmarks/chain_probe.py --shared ../shared --anchors 0,10,100
    OMP_NUM_THREADS=2 python benchmarks/chain_probe.py --shared ../shared --anchors 0 --synth-steps 800
"""
import argparse
import copy
import time

import torch
from continual_repair_probe import chain_setup  # the same requests and D_r images as that probe

from l2ul import UnlearnConfig, unlearn
from l2ul.engine import prepare_ingredients
from l2ul.evaluation import predict
from l2ul.methods import repair as repair_mod

ANCHOR = {"weight": 0.0}


def _patch() -> None:
    setup, repair_loss = repair_mod.Repair.setup, repair_mod.Repair._repair_loss

    def patched_setup(self, ctx):
        setup(self, ctx)
        ctx.extras["probe_theta0"] = [p.detach().clone() for p in ctx.model.parameters()]

    def patched_loss(self, ctx):
        base = repair_loss(self, ctx)
        theta0 = ctx.extras["probe_theta0"]

        def loss(model, c):
            out = base(model, c)
            if ANCHOR["weight"]:
                out = out + ANCHOR["weight"] * sum((p - p0).pow(2).sum() for p, p0 in zip(model.parameters(), theta0))
            return out

        return loss

    repair_mod.Repair.setup, repair_mod.Repair._repair_loss = patched_setup, patched_loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--anchors", default="0,10,100")
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--repair-steps", type=int, default=300)
    ap.add_argument("--synth-steps", type=int, default=UnlearnConfig().synth_steps)
    ap.add_argument("--synth-images", type=int, default=UnlearnConfig().synth_images)
    args = ap.parse_args()
    _patch()
    b, net, sets, d_r = chain_setup(args.shared)
    cfg = UnlearnConfig(repair_steps=args.repair_steps, synth_steps=args.synth_steps, synth_images=args.synth_images)

    x1, y1 = b.stack_train(sets[0])
    t0 = time.perf_counter()
    proxy = prepare_ingredients(net, x1, y1, ["proxy"], config=cfg.replace(seed=1001), progress=True)["proxy"]
    print(f"proxy ready in {time.perf_counter() - t0:.0f} s")
    print(f"proxy: {proxy.source}; repair_steps {args.repair_steps}")
    print("| anchor | request | D_r (2,000) | sum (theta - theta_before)^2 | steps | earlier instances on their label | s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| - | 0 | {d_r(net):.2f} | | | | |", flush=True)
    for w in [float(a) for a in args.anchors.split(",")]:
        ANCHOR["weight"] = w
        cur = copy.deepcopy(net)
        xs, ys = [], []
        for r in range(1, args.requests + 1):
            x, y = b.stack_train(sets[r - 1])
            before = [p.detach().clone() for p in cur.parameters()]
            earlier = (torch.cat(xs), torch.cat(ys)) if xs else None
            t0 = time.perf_counter()
            # engine seed seed * 1000 + r with the bench's seed 0, as l2ul bench --requests runs request r
            res = unlearn(cur, x, y, config=cfg.replace(seed=r), ingredients={"proxy": proxy},
                          data={"keep_forgotten": earlier} if earlier else {}, inplace=True, progress=False)
            moved = sum(float((p.detach() - q).pow(2).sum()) for p, q in zip(cur.parameters(), before))
            relapsed = int(predict(cur, earlier).preds.eq(earlier[1]).sum()) if earlier else 0
            print(f"| {w:g} | {r} | {d_r(cur):.2f} | {moved:.4g} | {res.steps} ({res.status}) | {relapsed} | "
                  f"{time.perf_counter() - t0:.0f} |", flush=True)
            xs.append(x)
            ys.append(y)


if __name__ == "__main__":
    main()
