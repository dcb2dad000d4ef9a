"""Speed of a deletion request, end to end, per method, k and cache state (issue #12).

Every cell is one real ``l2ul.run_request`` (the code path of ``l2ul unlearn``: load, check, unlearn,
evaluate, report, publish) in a fresh subprocess, so that its peak memory is its own. Measured per cell:

- wall seconds per stage (``request_timings_s``: load, unlearn, evaluation, report; publish) and per part of
  the unlearning (``timings_s``: adversarial, importance, proxy, teacher, optimization, repair);
- image passes: forward passes with gradients (PGD and optimisation steps: each is also a backward pass)
  and without (stopping checks, teacher outputs, evaluation), counted by a forward pre-hook on the model;
- peak resident memory of the subprocess (``ru_maxrss``);
- D_f, D_r and D_test before and after, as the report states them.

``--cache warm`` runs with the outputs cache (``l2ul.output_cache``) already holding the original model's
figures (what every request after the first on a model sees); ``cold`` turns it off (``L2UL_CACHE=0``: what
every request cost before 0.4). The data-free proxy synthesis of ``repair`` is a one-time cost per model,
cached apart from the outputs cache: ``prepare`` cells time it alone.

Retraining from scratch is counted, not run: the pretraining recipe's epochs x 50,000 training images,
each a forward and a backward pass, priced at the seconds per such pass this run measured in the paper
method's optimisation phase.

Usage (resumes: cells already in OUT/results.jsonl are skipped)::

    OMP_NUM_THREADS=1 python benchmarks/speed.py --shared ../shared --models resnet20 --ks 1,16 \\
        --methods repair,l2ul --out benchmarks/results/speed

A method may carry config overrides, ``NAME:FIELD=VALUE:...`` (e.g. ``repair:forget_phase=head_edit:repair_steps=0``).

prints the table (also written to OUT/speed.md) and plots time against k per method (OUT/speed.png).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WEIGHTS = {"resnet20": "cifar10_resnet20-12fca82f.th", "resnet32": "cifar10_resnet32-d509ac18.th"}
#: pretraining epochs of the released weights (akamaster/pytorch_resnet_cifar10: 200 epochs), x 50,000 images
RETRAIN_EPOCHS = 200
N_TRAIN = 50_000


def _method_spec(spec: str):
    """``NAME`` or ``NAME:FIELD=VALUE:...`` (config overrides, e.g. ``repair:forget_phase=head_edit:repair_steps=0``):
    ``(name, UnlearnConfig or None)``, each value converted to its field's type."""
    import dataclasses

    from l2ul import UnlearnConfig

    name, *pairs = spec.split(":")
    if not pairs:
        return name, None
    kinds = {f.name: f.metadata["kind"] for f in dataclasses.fields(UnlearnConfig)}
    over = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        over[key] = kinds[key](value)
    return name, UnlearnConfig(**over)


def _cell(args) -> dict:
    """One request, in this (sub)process: the record of the cell."""
    import torch

    from l2ul.loading import load_model_from
    from l2ul.pipeline import run_request

    shared = Path(args.shared)
    model = load_model_from(arch=args.model, weights=shared / "datasets" / "pretrained" / WEIGHTS[args.model])
    passes = {"grad": 0, "nograd": 0}

    def count(_module, inputs):
        passes["grad" if torch.is_grad_enabled() else "nograd"] += int(inputs[0].shape[0])

    model.register_forward_pre_hook(count)          # copied with the model by the engine's deepcopy
    stage_passes = {}
    marks = []

    def log(line: str) -> None:                     # run_request's log lines mark its stages
        marks.append((line, dict(passes)))

    method, config = _method_spec(args.method)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        outcome = run_request(model=model, dataset=f"cifar10-jpeg:{shared / 'datasets' / 'cifar10_jpeg.npz'}",
                              forget_random=args.k, seed=args.seed, method=method, config=config,
                              out=Path(tmp) / "m.safetensors", log=log)
        wall = time.perf_counter() - t0
    at_eval = next((p for line, p in marks if line.startswith("l2ul: evaluating")), passes)
    stage_passes = {"unlearn_grad": at_eval["grad"], "unlearn_nograd": at_eval["nograd"],
                    "evaluation_nograd": passes["nograd"] - at_eval["nograd"]}
    rep = outcome.report
    m = rep["metrics"]
    opt_steps = {p["name"]: p["steps"] for p in rep["phases"]}
    return {"model": args.model, "method": args.method, "k": args.k, "seed": args.seed, "cache": args.cache,
            "status": rep["status"], "holds_with_original_bn_stats": rep["holds_with_original_bn_stats"],
            "wall": wall, "stages": outcome.timings, "parts": rep["timings_s"], "steps": opt_steps,
            "passes": stage_passes, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "acc_forget": m.get("acc_forget"), "acc_retain": m.get("acc_retain"), "acc_test": m.get("acc_test"),
            "acc_retain_before": m.get("acc_retain_before"), "acc_test_before": m.get("acc_test_before"),
            "proxy": rep.get("proxy"), "threads": torch.get_num_threads()}


def _prepare(args) -> dict:
    """The one-time synthesis of the data-free proxy for this model (cached for every later request)."""
    from l2ul import UnlearnConfig
    from l2ul.loading import load_model_from
    from l2ul.synthesis import cached_synthesis

    shared = Path(args.shared)
    model = load_model_from(arch=args.model, weights=shared / "datasets" / "pretrained" / WEIGHTS[args.model])
    cfg = UnlearnConfig()
    t0 = time.perf_counter()
    res = cached_synthesis(model, cfg.synth_images, image_shape=(3, 32, 32), num_classes=10, steps=cfg.synth_steps,
                           seed=0, lr_schedule=cfg.synth_schedule)
    return {"model": args.model, "method": "prepare", "k": 0, "seed": 0, "cache": "synthesis",
            "wall": time.perf_counter() - t0, "synthesis_seconds": res.seconds, "from_cache": res.from_cache,
            "synth_images": cfg.synth_images}


def _run_in_subprocess(args, model, method, k, cache) -> dict:
    cmd = [sys.executable, __file__, "--one", "--shared", args.shared, "--model", model, "--method", method,
           "--k", str(k), "--cache", cache, "--seed", str(args.seed)]
    env = {**os.environ, "L2UL_CACHE": "0" if cache == "cold" else "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"cell {model} {method} k={k} {cache} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(records) -> str:
    """The markdown table: one row per cell, with the ratio to the paper recipe (l2ul) of the same model, k
    and cache state, and the cost relative to retraining."""
    paper = {(r["model"], r["k"], r["cache"]): r for r in records if r["method"] == "l2ul"}
    rows = ["| model | method | k | cache | total s | prep s | optimise s | evaluation s | steps | grad passes | "
            "no-grad passes | peak MiB | D_f | holds | D_r | D_test | l2ul time / this | x retrain |",
            "|" + " --- |" * 18]
    for r in records:
        if r["method"] == "prepare":
            rows.append(f"| {r['model']} | synthesis (one-time, {r['synth_images']} images) | - | - | "
                        f"{r['synthesis_seconds']:.0f} |" + " |" * 13)
            continue
        p = r["parts"]
        prep = sum(p.get(x, 0.0) for x in ("adversarial", "importance", "proxy", "teacher"))
        opt = p.get("optimization", 0.0) + p.get("repair", 0.0)
        ref = paper.get((r["model"], r["k"], r["cache"]))
        ratio = f"{ref['wall'] / r['wall']:.1f}x" if ref else "-"
        retrain = RETRAIN_EPOCHS * N_TRAIN
        cost = r["passes"]["unlearn_grad"] / retrain
        rows.append(
            f"| {r['model']} | {r['method']} | {r['k']} | {r['cache']} | {r['wall']:.1f} | {prep:.1f} | {opt:.1f} | "
            f"{r['stages'].get('evaluation', 0):.1f} | {sum(r['steps'].values())} | {r['passes']['unlearn_grad']:,} | "
            f"{r['passes']['unlearn_nograd'] + r['passes']['evaluation_nograd']:,} | {r['peak_rss_mib']:.0f} | "
            f"{100 * r['acc_forget']:.1f} | {'yes' if r['holds_with_original_bn_stats'] else 'no'} | "
            f"{100 * r['acc_retain_before']:.1f} -> {100 * r['acc_retain']:.1f} | "
            f"{100 * r['acc_test_before']:.1f} -> {100 * r['acc_test']:.1f} | {ratio} | {cost:.2e} |")
    for model in sorted({r["model"] for r in records}):
        ref = [r for r in records if r["model"] == model and r["method"] == "l2ul" and r["passes"]["unlearn_grad"]]
        if ref:
            rate = sum(r["parts"]["adversarial"] + r["parts"]["optimization"] for r in ref) / sum(
                r["passes"]["unlearn_grad"] for r in ref)
            rows.append(f"\nRetraining {model} from scratch (counted, not run): {RETRAIN_EPOCHS} epochs x {N_TRAIN:,} "
                        f"= {RETRAIN_EPOCHS * N_TRAIN:,} forward+backward image passes, about "
                        f"{RETRAIN_EPOCHS * N_TRAIN * rate / 3600:.1f} h at the {1000 * rate:.2f} ms per pass "
                        "that l2ul's PGD and optimisation took in this run ('x retrain' = a row's passes with "
                        "gradients / that count).")
    return "\n".join(rows)


def _plot(records, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    keys = sorted({(r["model"], r["method"], r["cache"]) for r in records if r["method"] != "prepare"})
    for key in keys:
        pts = sorted((r["k"], r["wall"]) for r in records if (r["model"], r["method"], r["cache"]) == key)
        ax.plot([k for k, _ in pts], [t for _, t in pts], marker="o", label=" ".join(map(str, key)))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("k (instances forgotten)")
    ax.set_ylabel("seconds per request, end to end")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--models", default="resnet20")
    ap.add_argument("--methods", default="repair,l2ul")
    ap.add_argument("--ks", default="1,16,64,128")
    ap.add_argument("--caches", default="warm", help="comma list of warm, cold")
    ap.add_argument("--warmup", default="neggrad",
                    help="methods run once at k = 1 before the warm cells, to fill the outputs cache (not shown)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/speed")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        rec = _prepare(args) if args.method == "prepare" else _cell(args)
        print(json.dumps(rec))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "results.jsonl"
    records = [json.loads(x) for x in jsonl.read_text().splitlines()] if jsonl.exists() else []
    done = {(r["model"], r["method"], r["k"], r["cache"]) for r in records}
    todo = []
    for model in args.models.split(","):
        if "repair" in args.methods.split(","):
            todo.append((model, "prepare", 0, "synthesis"))
        for cache in args.caches.split(","):
            if cache == "warm":      # the original's figures in the outputs cache, as after a first request
                todo += [(model, m, 1, "warmup") for m in args.warmup.split(",")]
            for k in map(int, args.ks.split(",")):
                todo += [(model, m, k, cache) for m in args.methods.split(",")]
    for cell in todo:
        if cell in done:
            continue
        print(f"speed: {' '.join(map(str, cell))} ...", flush=True)
        rec = _run_in_subprocess(args, *cell)
        rec["machine"] = f"{os.cpu_count()} CPU, torch threads {rec.get('threads')}, {time.strftime('%Y-%m-%d')}"
        with jsonl.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        records.append(rec)
        print(f"speed: {' '.join(map(str, cell))}: {rec['wall']:.1f}s", flush=True)
    shown = [r for r in records if r["cache"] != "warmup"]
    text = _table(shown)
    (out / "speed.md").write_text(text + "\n")
    _plot(shown, out / "speed.png")
    print(text)


if __name__ == "__main__":
    main()
