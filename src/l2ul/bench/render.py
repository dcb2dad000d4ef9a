"""The human-readable outputs of a benchmark folder: headers and tables (``table.md``, ``continual.md``),
``results.csv`` / ``results.json`` / ``continual.json``, the plots, the log line of a cell, and
:func:`render_results`, which writes them again from a folder's records alone."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

from ..errors import L2ULError
from ..reports import markdown_table, paper_table, plot_continual, plot_phase_times, plot_vs_k, write_json
from .machine import now
from .store import read_jsonl, read_settings, write_csv, write_text

__all__ = ["render_results", "bench_header", "write_bench_outputs", "write_continual_outputs", "sort_records",
           "cell_name", "cell_line", "fmt_pct", "continual_table"]

_CONTINUAL_COLUMNS = [("method", "Method"), ("request", "request"), ("acc_retain", "D_r (%)"),
                      ("acc_test", "D_test (%)"), ("acc_forget", "D_f current (%)"),
                      ("acc_previously_forgotten", "earlier D_f (%)"),
                      ("acc_forgotten_so_far", "all forgotten so far (%)"),
                      ("acc_all_requests", "all R requests (%)"), ("agreement_test", "agree test (%)"),
                      ("steps", "steps"), ("converged", "converged"), ("time_adversarial", "t_adv (s)"),
                      ("time_importance", "t_imp (s)"), ("time_optimization", "t_opt (s)")]
_PCT_KEYS = {"acc_retain", "acc_test", "acc_forget", "acc_previously_forgotten", "acc_forgotten_so_far",
             "acc_all_requests", "agreement_test"}


# ------------------------------------------------------------------------------------------ lines, header
def fmt_pct(v) -> str:
    """A fraction as a percentage with one decimal, ``-`` for ``None``."""
    return "-" if v is None else f"{100 * v:.1f}%"


def cell_name(method: str, k: int, seed: int) -> str:
    """The file stem of a grid cell under ``cells/``."""
    return f"{method}_k{k}_s{seed}"


def cell_line(r: Mapping[str, Any], i: int, n: int) -> str:
    """The log line of grid record ``r``, the ``i``-th of ``n`` cells."""
    return (f"[{i}/{n}] {r['method']} k={r['k']} seed={r['seed']}: {r['status']} after {r['steps']} steps | "
            f"D_f {fmt_pct(r.get('acc_forget_before'))} -> {fmt_pct(r.get('acc_forget'))}, "
            f"D_r {fmt_pct(r.get('acc_retain_before'))} -> {fmt_pct(r.get('acc_retain'))}, "
            f"D_test {fmt_pct(r.get('acc_test_before'))} -> {fmt_pct(r.get('acc_test'))} | "
            f"t_adv {r['time_adversarial']:.2f}s{' (shared)' if r.get('adversarial_shared') else ''}, "
            f"t_imp {r['time_importance']:.2f}s, t_opt {r['time_optimization']:.2f}s, "
            f"total {r['time_total']:.2f}s, eval {r['time_evaluation']:.2f}s")


def _machine_line(m: Mapping[str, Any]) -> str:
    cpu = m.get("cpu_model") or m.get("processor") or "unknown CPU"
    s = (f"{cpu} ({m.get('cpu_count')} CPUs), torch {m.get('torch')} with {m.get('torch_threads')} threads, "
         f"device {m.get('device')}")
    if m.get("gpu"):
        s += f" ({m['gpu']})"
    return s


def bench_header(settings: Mapping[str, Any], title: str) -> str:
    """The Markdown header of ``table.md`` / ``continual.md``: what was measured, on what, where and when."""
    m, d, c = settings["model"], settings["dataset"], settings["config"]
    cfg = ", ".join(f"{k} {c[k]}" for k in ("lr", "momentum", "weight_decay", "max_steps", "pgd_eps", "pgd_alpha",
                                            "pgd_steps", "adv_per_instance", "reg_lambda", "adv_batch_size",
                                            "forget_batch_size", "bn"))
    hashed = settings["hashed"]
    mia = (f"{hashed.get('mia_attack')} attack on the true-class confidence, fitted on the D_r subset "
           f"(members) vs D_test (non-members), at most {hashed.get('mia_max_samples')} samples per class, "
           "subsampling seed = grid seed" if "mia_attack" in hashed else None)
    seeding = ("engine seed = grid seed" if settings["mode"] == "bench"
               else "engine seed of request r = seed * 1000 + r")
    lines = [
        f"# {title}",
        "",
        f"- Model: {m.get('arch') or m['class']} ({m['parameters']:,} parameters, state sha256 {m['sha256'][:12]})",
        f"- Dataset: {d['name']} ({d['n_train']} train / {d['n_test']} test, {d['num_classes']} classes)",
        f"- D_f: {settings['forget_sets']}",
        f"- D_r: {settings['retain_eval']['description']}",
        (f"- D_test: {settings['test']['description']}" if settings["test"].get("proxy_size")
         else f"- D_test: the whole test set ({settings['test']['size']} instances)"),
        f"- Remaining data for oracle: {settings['oracle_pool']['size']} instances; "
        f"{settings['oracle_pool']['description']}",
    ]
    if mia:
        lines.append(f"- MIA efficacy: {mia}")
    lines += [
        f"- Config ({settings.get('config_name') or 'custom'}): {cfg}; {seeding}",
        f"- Machine: {_machine_line(settings['machine'])}",
        f"- Date: {now()} (started {settings['created']}); settings hash {settings['settings_hash']}",
    ]
    lines += [f"- Note: {n}" for n in settings.get("notes", [])]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- grid
def sort_records(records: List[Dict[str, Any]], methods: List[str], ks: List[int],
                 seeds: List[int]) -> List[Dict[str, Any]]:
    """Grid records by k, seed, then method (each in the given order; unknown values last)."""
    def pos(seq, v):
        return seq.index(v) if v in seq else len(seq)

    def key(r):
        return pos(ks, r["k"]), pos(seeds, r["seed"]), pos(methods, r["method"]), str(r["method"])
    return sorted(records, key=key)


def write_bench_outputs(out: Path, settings: Mapping[str, Any], records: List[Dict[str, Any]], *,
                        plots: bool) -> None:
    """``results.csv``, ``results.json``, ``table.md`` and (with ``plots``) the two grid plots."""
    if not records:
        return
    write_csv(out / "results.csv", records)
    write_json(out / "results.json", {"settings": settings, "records": records})
    text = bench_header(settings, "l2ul benchmark") + "\n" + paper_table(records)
    failed = [r for r in records if r.get("status") == "diverged"]
    if failed:
        text += ("\nDiverged runs (non-finite model: no metrics after unlearning, left out of the means; the "
                 "'converged' column counts them as not converged): "
                 + ", ".join(f"{r['method']} k={r['k']} seed={r['seed']}" for r in failed) + "\n")
    write_text(out / "table.md", text)
    if plots:
        plot_vs_k(records, out / "plot_vs_k.png")
        plot_phase_times(records, out / "plot_phase_times.png")


# -------------------------------------------------------------------------------------------- continual
def continual_table(records: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown table of continual records (accuracies in percent)."""
    rows = []
    for r in records:
        row = {}
        for key, _ in _CONTINUAL_COLUMNS:
            v = r.get(key)
            row[key] = 100 * v if key in _PCT_KEYS and v is not None else v
        rows.append(row)
    return markdown_table(rows, _CONTINUAL_COLUMNS, floatfmt=".2f") + "\n"


def write_continual_outputs(out: Path, settings: Mapping[str, Any], records: List[Dict[str, Any]], *,
                            plots: bool) -> None:
    """``continual.json``, ``continual.md`` and (with ``plots``) ``plot_continual.png``."""
    if not records:
        return
    write_json(out / "continual.json", {"settings": settings, "records": records})
    legend = ("Accuracy after each request (request 0 = the original model): D_r subset, D_test, the current "
              "request's forget set, the forget sets of earlier requests (do they stay forgotten?), everything "
              "forgotten so far, and the union of all R requests' instances (including future ones).")
    write_text(out / "continual.md", bench_header(settings, "l2ul continual unlearning") + "\n" + legend
               + "\n\n" + continual_table(records))
    if plots:
        plot_continual(records, out / "plot_continual.png")


# ------------------------------------------------------------------------------------------- re-rendering
def render_results(out_dir, *, plots: bool = True) -> List[Path]:
    """Write again the tables, CSV/JSON and plots of a finished or interrupted ``l2ul bench`` folder from its
    records alone (no model, no data): after upgrading l2ul's reports, or to look at a run still in progress.

    Reads ``settings.json`` and ``results.jsonl`` (grid) and/or ``continual.jsonl`` (continual). Records of
    other settings are refused, as on resume. Returns the paths written.
    """
    out = Path(out_dir)
    spath = out / "settings.json"
    if not spath.is_file():
        raise L2ULError(f"{out} holds no l2ul bench results (no settings.json); give the --out of a bench run")
    settings = read_settings(spath)
    h = settings.get("settings_hash")
    written: List[Path] = []
    for name, kind in (("results.jsonl", "grid"), ("continual.jsonl", "continual")):
        path = out / name
        if not path.exists():
            continue
        records, _ = read_jsonl(path)
        foreign = [r for r in records if r.get("settings_hash") != h]
        if foreign:
            raise L2ULError(f"{path} holds {len(foreign)} record(s) of other settings than {spath}; "
                            "it cannot be rendered as one run")
        if not records:
            continue
        methods = list(settings.get("methods") or [])
        methods += [m for m in dict.fromkeys(r["method"] for r in records) if m not in methods]
        if kind == "grid":
            records = sort_records(records, methods, sorted({r["k"] for r in records}),
                                   sorted({r["seed"] for r in records}))
            write_bench_outputs(out, settings, records, plots=plots)
            written += [out / "table.md", out / "results.csv", out / "results.json"]
            if plots:
                written += [out / "plot_vs_k.png", out / "plot_phase_times.png"]
        else:
            order = {m: i for i, m in enumerate(methods)}
            records.sort(key=lambda r: (order[r["method"]], r["request"]))
            write_continual_outputs(out, settings, records, plots=plots)
            written += [out / "continual.md", out / "continual.json"] + ([out / "plot_continual.png"] if plots
                                                                        else [])
    if not written:
        raise L2ULError(f"{out} holds no finished records yet (results.jsonl / continual.jsonl are missing or "
                        "empty)")
    return written
