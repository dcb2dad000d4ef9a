"""A cost model of a deletion request: image passes x seconds per pass, checked against measured requests (#12).

``benchmarks/speed.py`` counts, for every request it runs, the image passes *with* gradients (PGD and
optimisation or repair steps: a forward and a backward pass each) and *without* (stopping checks, teacher
outputs, the evaluation). This script measures the seconds per image of each kind of pass for a few networks
on this machine and predicts a request's unlearning and evaluation time as

    passes_grad x s_grad + passes_nograd x s_nograd,

first for the network the requests ran on (so the prediction can be compared with what was measured), then
for networks too slow to run a whole request on this CPU, such as a torchvision ResNet-18 at 224 px (random
weights: the time of a pass does not depend on them). The pass counts are those of the ResNet-20's requests:
another network may need another number of steps, so the scaled rows are an estimate of the same request's
cost, not a measurement of that network's request.

Per-pass times: the model in eval mode (batch norm frozen, as l2ul's repair and evaluation run it); no-grad
passes under ``torch.inference_mode`` in batches of ``--eval-batch``; grad passes a forward and a
cross-entropy backward in batches of ``--grad-batch`` (the optimiser's update, a few parameter-sized adds, is
left out); the median of ``--reps`` timed repetitions after one warm-up.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/cost_model.py --speed benchmarks/results/speed_stopkl/results.jsonl \\
        --out benchmarks/results/cost_model.md
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

#: (name, builder, input side in pixels, grad batch, eval batch); the grad and eval batches of the small
#: networks are l2ul's repair batch (128 proxy + 16 forget images) and a typical evaluation batch
NETWORKS = {
    "resnet20": (32, 144, 256),
    "resnet32": (32, 144, 256),
    "resnet18@224": (224, 16, 32),
}


def build(name: str) -> torch.nn.Module:
    if name == "resnet18@224":
        import torchvision

        return torchvision.models.resnet18(num_classes=10)
    from l2ul.models import create_model

    return create_model(name, 10)


def seconds_per_image(model: torch.nn.Module, side: int, batch: int, grad: bool, reps: int) -> float:
    """Median seconds per image of a forward pass (``grad``: forward + backward) over ``reps`` batches."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, side, side, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    model.eval()

    def once() -> float:
        t0 = time.perf_counter()
        if grad:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
        else:
            with torch.inference_mode():
                model(x)
        return time.perf_counter() - t0

    once()                                           # warm-up (allocations, first-call dispatch)
    return statistics.median(once() for _ in range(reps)) / batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--speed", required=True, help="a benchmarks/speed.py results.jsonl (its pass counts)")
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=None, help="also write the tables to this markdown file")
    args = ap.parse_args()

    cost = {}
    for name in args.networks.split(","):
        side, gb, eb = NETWORKS[name]
        model = build(name)
        cost[name] = {"grad": seconds_per_image(model, side, gb, True, args.reps),
                      "nograd": seconds_per_image(model, side, eb, False, args.reps)}
        print(f"cost_model: {name}: {cost[name]['grad'] * 1e3:.2f} ms per grad pass, "
              f"{cost[name]['nograd'] * 1e3:.2f} ms per no-grad pass", flush=True)

    cells = [json.loads(line) for line in Path(args.speed).read_text().splitlines() if line.strip()]
    cells = [c for c in cells if c.get("cache") == "warm" and "passes" in c]
    lines = [f"Per-pass cost on this machine ({torch.get_num_threads()} torch threads):", "",
             "| network | ms per grad pass (fwd + bwd) | ms per no-grad pass | grad / no-grad |",
             "| --- | ---: | ---: | ---: |"]
    for name, c in cost.items():
        lines.append(f"| {name} | {c['grad'] * 1e3:.2f} | {c['nograd'] * 1e3:.2f} | {c['grad'] / c['nograd']:.1f} |")
    lines += ["", f"Requests of `{args.speed}` (warm cells), measured against predicted; then the same pass counts "
              "priced for the other networks (an estimate: their requests may take other step counts):", "",
              "| method | k | grad passes | no-grad passes | measured unlearn + eval s | "
              + " | ".join(f"predicted {n} s" for n in cost) + " |",
              "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in cost) + " |"]
    for c in sorted(cells, key=lambda c: (c["k"], c["method"])):
        p = c["passes"]
        grad, nograd = p["unlearn_grad"], p["unlearn_nograd"] + p["evaluation_nograd"]
        measured = c["stages"]["unlearn"] + c["stages"]["evaluation"]
        preds = [grad * cost[n]["grad"] + nograd * cost[n]["nograd"] for n in cost]
        lines.append(f"| {c['method']} | {c['k']} | {grad:,} | {nograd:,} | {measured:.1f} | "
                     + " | ".join(f"{v:,.0f}" for v in preds) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
