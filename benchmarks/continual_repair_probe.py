"""Where does a data-free continual request lose its accuracy: in the forget phase, or in the repair?

In the data-free continual run (BENCHMARKS.md 5c: 8 requests of 16 on the shared ResNet-20, seed 0) the
first request lost 1.0 point of D_r and the second 5.8, although its forget phase took 5 steps; repairing
toward the original model instead of the previous one changed nothing at request 2. This probe replays
request 1 as the bench runs it (the same forget sets, engine seed 1001, the proxy synthesised once from the
original, from the cache), then runs request 2 (seed 1002) twice: with request 1's instances kept forgotten
(``keep_forgotten``, as the bench does) and without, and prints D_r on 2,000 remaining training images
(outside all 8 requests) after the forget phase and at every 25th repair step, with the forget accuracy of
request 1's instances beside it. ``--variants`` picks the runs: ``keep`` and ``nokeep`` (the two above, the
default), and ``fresh2`` (request 2's forget set as a *first* request, on the original model: is the set
itself harder, or the model that has forgotten request 1 already?). (Session 11's ``online`` and ``r1online`` variants measured the ``repair_augment="online"`` option,
since deleted for its lack of gain: BENCHMARKS.md 5c, raw ``benchmarks/results/continual_online_probe.md``.)

    OMP_NUM_THREADS=1 python benchmarks/continual_repair_probe.py --shared ../shared
"""
import argparse
import copy
import time

import numpy as np

from l2ul import UnlearnConfig, unlearn
from l2ul.bench import continual_forget_sets
from l2ul.data import load_dataset, stack
from l2ul.engine import prepare_ingredients
from l2ul.evaluation import predict
from l2ul.loading import load_model_from


def chain_setup(shared: str):
    """The shared CIFAR-10 copy, the shared ResNet-20 (eval mode), the bench's 8 continual forget sets of 16
    (seed 0) and ``d_r(model)``: accuracy (%) on 2,000 remaining training images outside all 8 sets."""
    b = load_dataset(f"cifar10-jpeg:{shared}/datasets/cifar10_jpeg.npz")
    net = load_model_from(arch="resnet20", weights=f"{shared}/datasets/pretrained/cifar10_resnet20-12fca82f.th")
    net.eval()
    sets = continual_forget_sets(b.n_train, 8, 16, 0)
    outside = np.setdiff1d(np.arange(b.n_train), np.concatenate(sets))
    x_r, y_r = stack(b.train, [int(i) for i in np.random.default_rng(1).choice(outside, 2000, replace=False)])

    def d_r(model) -> float:
        return 100 * predict(model, (x_r, y_r)).preds.eq(y_r).float().mean().item()

    return b, net, sets, d_r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--variants", default="keep,nokeep", help="comma-separated: keep, nokeep, fresh2")
    args = ap.parse_args()
    b, net, sets, d_r = chain_setup(args.shared)
    (x1, y1), (x2, y2) = b.stack_train(sets[0]), b.stack_train(sets[1])
    cfg = UnlearnConfig()

    def on_label(model, x, y) -> int:
        return int(predict(model, (x, y)).preds.eq(y).sum())

    proxy = prepare_ingredients(net, x1, y1, ["proxy"], config=cfg.replace(seed=1001))["proxy"]
    print(f"proxy: {proxy.source}")
    print("| run | step | phase | D_r (2,000) | request 1's instances on their label | s |")
    print("|---|---:|---|---:|---:|---:|")
    print(f"| original | | | {d_r(net):.2f} | {on_label(net, x1, y1)} / 16 | |", flush=True)
    variants = args.variants.split(",")
    if variants != ["fresh2"]:          # request 1 is not needed for a fresh request 2 alone
        t0 = time.perf_counter()
        r1 = unlearn(net, x1, y1, config=cfg.replace(seed=1001), ingredients={"proxy": proxy}, progress=False)
        print(f"| request 1 | {r1.steps} | end ({r1.status}) | {d_r(r1.model):.2f} | "
              f"{on_label(r1.model, x1, y1)} / 16 | {time.perf_counter() - t0:.0f} |", flush=True)
    names = {"keep": "request 1 kept forgotten", "nokeep": "without keep_forgotten",
             "fresh2": "as a first request, on the original"}
    unknown = [v for v in variants if v not in names]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    for variant in variants:
        keep = variant == "keep"
        cur = copy.deepcopy(net if variant == "fresh2" else r1.model)
        name = "request 2, " + names[variant]
        seen = {"forget_end": None}
        t0 = time.perf_counter()

        def trace(step, score, cur=cur, name=name, seen=seen, t0=t0):
            if seen["forget_end"] is None and score == 0.0:
                seen["forget_end"] = step
                phase = "forget phase done"
            elif seen["forget_end"] is not None and (step - seen["forget_end"]) % args.every == 0:
                phase = f"repair step {step - seen['forget_end']}"
            else:
                return
            print(f"| {name} | {step} | {phase} | {d_r(cur):.2f} | {on_label(cur, x1, y1)} / 16 | "
                  f"{time.perf_counter() - t0:.0f} |", flush=True)

        data = {"keep_forgotten": (x1, y1)} if keep else {}
        r2 = unlearn(cur, x2, y2, config=cfg.replace(seed=1002), ingredients={"proxy": proxy}, data=data,
                     inplace=True, progress=False, callback=trace)
        print(f"| {name} | {r2.steps} | end ({r2.status}) | {d_r(cur):.2f} | {on_label(cur, x1, y1)} / 16 | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
