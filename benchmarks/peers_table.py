"""The peers table of BENCHMARKS.md section 8 from committed bench cells, which may come from several folders.

Every source is ``FOLDER[:METHOD[=LABEL]]``: all the methods of a bench folder, or one of them (with an optional
row label). The folders must describe the same experiment (the same forget sets and D_r subset: one
``retain_eval_sha`` across them) and the script refuses them otherwise; the D_test of a folder whose proxy is
half of the test split is the other half, which the row says. Cells of a method missing a seed are reported with
the seeds they have. Nothing is recomputed: it reads ``cells/*.json``.

    python benchmarks/peers_table.py --k 128 benchmarks/results/resnet20_peers_k128 \\
        benchmarks/results/resnet20_grid_k128:l2ul benchmarks/results/resnet20_grid_k128:neggrad \\
        benchmarks/results/resnet20_grid_k128:oracle \\
        "benchmarks/results/resnet20_repair_free_large:repair=repair, 0.4 default, data-free"
"""
import argparse
import json
import statistics
from pathlib import Path

from l2ul.methods import get_method


def _cells(folder: Path, k: int, method: str = None):
    out = {}
    for f in sorted((folder / "cells").glob(f"*_k{k}_s*.json")):
        if f.name.endswith(".report.json"):
            continue
        rec = json.loads(f.read_text())["record"]
        if method is None or rec["method"] == method:
            out.setdefault(rec["method"], []).append(rec)
    return out


def _ms(vals, digits=2, seeds=False):
    if not vals:
        return "–"
    m = statistics.fmean(vals)
    if len(vals) == 1:
        return f"{m:.{digits}f} (1 seed)"
    s = f"{m:.{digits}f} ± {statistics.stdev(vals):.{digits}f}"
    if seeds:
        s += " (" + " / ".join(f"{v:.{digits}f}" for v in vals) + ")"
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("sources", nargs="+", help="FOLDER[:METHOD[=LABEL]]")
    args = ap.parse_args()
    rows, shas, before = [], {}, None
    for src in args.sources:
        folder, _, rest = src.partition(":")
        method, _, label = rest.partition("=")
        folder = Path(folder)
        settings = json.loads((folder / "settings.json").read_text())["hashed"]
        shas[str(folder)] = settings["retain_eval_sha"]
        half_test = bool(settings.get("proxy_test_split"))
        found = _cells(folder, args.k, method or None)
        if not found:
            raise SystemExit(f"{src}: no k = {args.k} cells")
        for m, recs in found.items():
            recs.sort(key=lambda r: r["seed"])
            if before is None:
                before = recs
            rows.append((label or m, m, recs, half_test, folder.name))
    if len(set(shas.values())) != 1:
        raise SystemExit(f"the folders have different D_r subsets (retain_eval_sha): {shas}")
    print(f"| k = {args.k} | data used | converged | D_f | D_f with the original BN statistics (mean) | D_r | D_test "
          f"| loss AUC | steps | s (unlearn) | cells from |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    mean = lambda key, scale=100: scale * statistics.fmean(r[key] for r in before)  # noqa: E731
    print(f"| original | – | – | {mean('acc_forget_before'):.1f} | – | {mean('acc_retain_before'):.2f} | "
          f"{mean('acc_test_before'):.2f} | {mean('loss_auc_before', 1):.3f} | – | – | |")
    for label, m, recs, half_test, fname in rows:
        pct = lambda key, recs=recs: [100 * r[key] for r in recs if r.get(key) is not None]  # noqa: E731
        conv = sum(bool(r["converged"]) for r in recs)
        statuses = sorted({r["status"] for r in recs if not r["converged"]})
        conv_s = f"{conv}/{len(recs)}" + (f" ({', '.join(statuses)})" if statuses else "")
        bn = pct("forget_score_original_bn_stats")
        t = [r["time_unlearn_call"] for r in recs]
        auc = [r["loss_auc"] for r in recs if r.get("loss_auc") is not None]   # none where a run diverged
        dtest = _ms(pct("acc_test"))
        if half_test and dtest != "–":
            dtest += f" (other 5,000 test images; original {100 * recs[0]['acc_test_before']:.2f})"
        data = get_method(m).data_needs
        if "unlabeled proxy" in data:         # the repair: which of its two sources this folder ran with
            data = "5,000 unlabeled test images" if half_test else "none"
        print(f"| {label} | {data} | {conv_s} | {_ms(pct('acc_forget'), 1)} | "
              f"{f'{statistics.fmean(bn):.1f}' if bn else '–'} | {_ms(pct('acc_retain'), seeds=True)} | {dtest} | "
              f"{f'{statistics.fmean(auc):.3f}' if auc else '–'} | {_ms([r['steps'] for r in recs], 0)} | "
              f"{min(t):.0f}-{max(t):.0f} | {fname} |")


if __name__ == "__main__":
    main()
