"""Reports: JSON files, plain-text and markdown tables, the paper's results table and plots.

Every file is written atomically (:mod:`l2ul.safety`), so an interrupted run never leaves a half-written
report. Plots use matplotlib's Agg canvas directly (no pyplot global state, no display needed); matplotlib
is imported only when a plot is drawn.

Benchmark *records* are flat dicts, one per (method, k, seed) run, with the keys ``method``, ``k``, ``seed``,
``acc_forget``, ``acc_retain``, ``acc_test`` (after unlearning, in [0, 1]), the same three with ``_before``
(the original model), ``mia_efficacy`` (optionally ``mia_efficacy_before``), ``loss_auc`` (optionally
``loss_auc_before``), ``steps``, ``converged`` (bool) and ``time_adversarial``, ``time_importance``,
``time_optimization`` (seconds). Missing or ``None`` values are shown as ``-`` and left out of means.
Continual-request records (:func:`plot_continual`) use ``method``, ``request`` (1, 2, ...; 0 = the
original), ``acc_retain``, ``acc_test``, optional ``seed`` and optional ``acc_retain_before`` /
``acc_test_before``.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections import OrderedDict
from pathlib import Path, PurePath
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple, Union

import numpy as np

from .errors import L2ULError
from .safety import PathLike, atomic_path, atomic_write

__all__ = [
    "to_jsonable",
    "write_json",
    "read_json",
    "format_table",
    "markdown_table",
    "paper_table",
    "plot_vs_k",
    "plot_phase_times",
    "plot_continual",
]

Columns = Union[Sequence[str], Sequence[Tuple[str, str]], Mapping[str, str]]


# --------------------------------------------------------------------------------------------------- JSON
def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` to plain JSON types.

    numpy / torch scalars become Python numbers, arrays and tensors nested lists, paths strings, dataclasses
    dicts, tuples and sets lists, mapping keys strings; non-finite floats (nan, inf) become ``None`` so the
    file is strict JSON. Anything else raises ``TypeError``.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return to_jsonable(float(obj))
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu()
            return to_jsonable(t.item() if t.dim() == 0 else t.tolist())
        if isinstance(obj, (torch.device, torch.dtype)):
            return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {_json_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        items = [to_jsonable(v) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return items
    raise TypeError(f"cannot write a {type(obj).__name__} to JSON; convert it to a number, string, list or dict")


def _json_key(k: Any) -> str:
    if isinstance(k, str):
        return k
    v = to_jsonable(k)
    return v if isinstance(v, str) else json.dumps(v)


def write_json(path: PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` (converted with :func:`to_jsonable`) as UTF-8 JSON to ``path`` atomically; returns the path."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n"
    path = Path(path)
    with atomic_write(path, "wb") as f:
        f.write(text.encode("utf-8"))
    return path


def read_json(path: PathLike) -> Any:
    """Read a JSON report; raises :class:`L2ULError` naming the file if it is missing or not valid JSON."""
    path = Path(path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise L2ULError(f"{path} does not exist; check the path") from None
    except json.JSONDecodeError as e:
        raise L2ULError(f"{path} is not valid JSON ({e}); it may be truncated, regenerate it") from None


# ------------------------------------------------------------------------------------------------- tables
def _columns(columns: Columns) -> List[Tuple[str, str]]:
    if isinstance(columns, Mapping):
        return [(str(k), str(v)) for k, v in columns.items()]
    out = []
    for c in columns:
        if isinstance(c, (tuple, list)):
            if len(c) != 2:
                raise ValueError(f"a column must be a key or a (key, header) pair, got {c!r}")
            out.append((c[0], str(c[1])))
        else:
            out.append((c, str(c)))
    return out


def _cell(v: Any, floatfmt: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return format(float(v), floatfmt)
    return str(v)


def _cells(rows: Iterable[Any], cols: List[Tuple[str, str]], floatfmt: str) -> List[List[str]]:
    table = []
    for row in rows:
        if isinstance(row, Mapping):
            values = [row.get(key) for key, _ in cols]
        else:
            row = list(row)
            values = [row[i] if i < len(row) else None for i in range(len(cols))]
        table.append([_cell(v, floatfmt) for v in values])
    return table


def format_table(rows: Iterable[Any], columns: Columns, *, floatfmt: str = ".4f") -> str:
    """An aligned plain-text table for terminals.

    ``rows`` are dicts (looked up by column key) or sequences (by position). ``columns`` are keys, (key,
    header) pairs or a mapping key -> header. Floats use ``floatfmt``, bools print yes/no, missing values
    ``-``. The first column is left-aligned, the others right-aligned.
    """
    cols = _columns(columns)
    headers = [h for _, h in cols]
    body = _cells(rows, cols, floatfmt)
    widths = [max([len(headers[i])] + [len(r[i]) for r in body]) for i in range(len(cols))]

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)]
        return "  ".join(parts).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in body)
    return "\n".join(out)


def markdown_table(rows: Iterable[Any], columns: Columns, *, floatfmt: str = ".4f") -> str:
    """A GitHub-flavoured markdown table (first column left-aligned, others right-aligned); see
    :func:`format_table` for ``rows`` and ``columns``."""
    cols = _columns(columns)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(esc(h) for _, h in cols) + " |",
           "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(cols))) + "|"]
    out.extend("| " + " | ".join(esc(c) for c in r) + " |" for r in _cells(rows, cols, floatfmt))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- aggregation
def _values(records: Iterable[Mapping[str, Any]], key: str) -> List[float]:
    out = []
    for r in records:
        v = r.get(key)
        if v is None:
            continue
        out.append(float(v))
    return out


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def _stat(values: Sequence[float], *, scale: float = 1.0, decimals: int = 2) -> str:
    """``mean ± std`` over seeds (sample std), or the single value, or ``-`` when there is none."""
    if not values:
        return "-"
    m, s = _mean_std([v * scale for v in values])
    if len(values) == 1:
        return f"{m:.{decimals}f}"
    return f"{m:.{decimals}f} ± {s:.{decimals}f}"


def _require(records: Sequence[Mapping[str, Any]], keys: Sequence[str], what: str) -> None:
    if not records:
        raise L2ULError(f"no records to {what}; run the benchmark first")
    for i, r in enumerate(records):
        missing = [k for k in keys if k not in r]
        if missing:
            raise L2ULError(f"record {i} lacks {missing} needed to {what}; check the benchmark results file")


def _group(records: Iterable[Mapping[str, Any]], *keys: str) -> "OrderedDict[tuple, List[Mapping[str, Any]]]":
    groups: "OrderedDict[tuple, List[Mapping[str, Any]]]" = OrderedDict()
    for r in records:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    return groups


def _methods(records: Iterable[Mapping[str, Any]]) -> List[str]:
    return list(OrderedDict.fromkeys(r["method"] for r in records))


def _ks(records: Iterable[Mapping[str, Any]]) -> list:
    return sorted({r["k"] for r in records})


def _one_per_seed(records: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """The original model's figures repeat in every method's record of a seed; keep one record per seed."""
    seen: Dict[Any, Mapping[str, Any]] = OrderedDict()
    for i, r in enumerate(records):
        seen.setdefault(r.get("seed", ("record", i)), r)
    return list(seen.values())


# -------------------------------------------------------------------------------------------- paper table
#: the marker of an MIA-efficacy cell where, in at least one run, the attack found no membership signal
MIA_UNINFORMATIVE_MARK = "†"


def _mia_uninformative(records: Iterable[Mapping[str, Any]], suffix: str = "") -> int:
    """How many of ``records`` carry an MIA efficacy whose attack did no better than chance
    (:func:`l2ul.evaluation.mia_signal_z` below :data:`~l2ul.evaluation.MIA_MIN_SIGNAL_Z`). Computed from the
    stored attack accuracy and sample count, so records written before the check are judged too."""
    from .evaluation import MIA_MIN_SIGNAL_Z, mia_signal_z

    n = 0
    for r in records:
        if r.get("mia_efficacy" + suffix) is None:
            continue
        z = mia_signal_z(r.get("mia_attack_train_acc" + suffix), r.get("mia_n_per_class" + suffix))
        n += int(z < MIA_MIN_SIGNAL_Z)  # nan (no attack accuracy stored) compares False: not flagged
    return n


def _mia_cell(records: Sequence[Mapping[str, Any]], suffix: str = "") -> str:
    cell = _stat(_values(records, "mia_efficacy" + suffix), scale=100)
    bad = _mia_uninformative(records, suffix)
    if bad:
        n = len(_values(records, "mia_efficacy" + suffix))
        cell += f" {MIA_UNINFORMATIVE_MARK}" + (f"{bad}/{n}" if n > 1 else "")
    return cell


def _mia_footnote() -> str:
    from .evaluation import MIA_MIN_SIGNAL_Z

    return (f"{MIA_UNINFORMATIVE_MARK}: in these runs (n/N: n of N seeds) the MIA attack did no better than "
            f"chance on its own training data (balanced accuracy within {MIA_MIN_SIGNAL_Z:g} standard errors of "
            "50%), so its efficacy on D_f carries no information; read the loss AUC instead.")

_PAPER_COLUMNS = ["Method", "D_f (%)", "D_r (%)", "D_test (%)", "MIA eff. (%)", "loss AUC", "steps",
                  "converged", "t_adv (s)", "t_imp (s)", "t_opt (s)"]


def paper_table(records: Sequence[Mapping[str, Any]]) -> str:
    """Markdown results in the paper's layout: one block per k, one row per method plus a ``before`` row
    (the original model), accuracy on D_f / D_r / D_test in %, then MIA efficacy (%), loss AUC, optimisation
    steps, converged runs (n/N) and seconds per phase (adversarial, importance, optimisation).

    With several seeds a cell shows ``mean ± std`` (sample standard deviation over seeds). Methods keep the
    order of their first appearance; k ascends. The ``before`` row averages one record per seed. An MIA
    efficacy whose attack found no membership signal in some runs is marked ``†`` (with n/N over seeds) and
    explained in a footnote.
    """
    records = list(records)
    _require(records, ["method", "k"], "make the results table")
    blocks = []
    for k in _ks(records):
        at_k = [r for r in records if r["k"] == k]
        n_seeds = len({r.get("seed") for r in at_k})
        rows = []
        base = _one_per_seed(at_k)
        rows.append(["before",
                     _stat(_values(base, "acc_forget_before"), scale=100),
                     _stat(_values(base, "acc_retain_before"), scale=100),
                     _stat(_values(base, "acc_test_before"), scale=100),
                     _mia_cell(base, "_before"),
                     _stat(_values(base, "loss_auc_before"), decimals=3),
                     "-", "-", "-", "-", "-"])
        for method in _methods(at_k):
            rs = [r for r in at_k if r["method"] == method]
            conv = [bool(r["converged"]) for r in rs if r.get("converged") is not None]
            rows.append([str(method),
                         _stat(_values(rs, "acc_forget"), scale=100),
                         _stat(_values(rs, "acc_retain"), scale=100),
                         _stat(_values(rs, "acc_test"), scale=100),
                         _mia_cell(rs),
                         _stat(_values(rs, "loss_auc"), decimals=3),
                         _stat(_values(rs, "steps"), decimals=1),
                         f"{sum(conv)}/{len(conv)}" if conv else "-",
                         _stat(_values(rs, "time_adversarial")),
                         _stat(_values(rs, "time_importance")),
                         _stat(_values(rs, "time_optimization"))])
        seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
        blocks.append(f"### k = {k} ({seeds})\n\n" + markdown_table(rows, _PAPER_COLUMNS))
    if _mia_uninformative(records) or _mia_uninformative(records, "_before"):
        blocks.append(_mia_footnote())
    return "\n\n".join(blocks) + "\n"


# ------------------------------------------------------------------------------------------------- plots
def _figure(figsize: Tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def _errorbar_series(ax, xs, groups: Sequence[Sequence[float]], label: str, scale: float = 100.0) -> None:
    pts = [(x, _mean_std([v * scale for v in g])) for x, g in zip(xs, groups) if g]
    if not pts:
        return
    ax.errorbar([p[0] for p in pts], [p[1][0] for p in pts], yerr=[p[1][1] for p in pts], marker="o",
                capsize=3, label=label)


def plot_vs_k(records: Sequence[Mapping[str, Any]], path: PathLike) -> Path:
    """PNG with two panels, D_r and D_test accuracy (%) against k (log2 axis), one line per method (mean over
    seeds, sample-std error bars), and the original model's level (mean of ``*_before``) as a dashed line."""
    records = list(records)
    _require(records, ["method", "k"], "plot accuracy against k")
    ks = _ks(records)
    fig = _figure((10, 4))
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "acc_retain", "D_r accuracy"), (axes[1], "acc_test", "D_test accuracy")):
        for method in _methods(records):
            rs = [r for r in records if r["method"] == method]
            _errorbar_series(ax, ks, [_values([r for r in rs if r["k"] == k], key) for k in ks], str(method))
        base = _values(records, f"{key}_before")
        if base:
            ax.axhline(100 * float(np.mean(base)), linestyle="--", color="gray", label="original")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("k (forget-set size)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


_PHASES = (("time_adversarial", "adversarial"), ("time_importance", "importance"),
           ("time_optimization", "optimisation"))


def plot_phase_times(records: Sequence[Mapping[str, Any]], path: PathLike) -> Path:
    """PNG of stacked bars: mean seconds per phase (adversarial, importance, optimisation) for each method,
    grouped by k. Missing phases count as 0 s."""
    records = list(records)
    _require(records, ["method", "k"], "plot phase times")
    ks, methods = _ks(records), _methods(records)
    fig = _figure((max(6.0, 0.6 * len(ks) * len(methods) + 2), 4.5))
    ax = fig.subplots()
    colors = ("tab:blue", "tab:orange", "tab:green")
    positions, labels = [], []
    x = 0.0
    for k in ks:
        for method in methods:
            rs = [r for r in records if r["k"] == k and r["method"] == method]
            if not rs:
                continue
            bottom = 0.0
            for (key, name), color in zip(_PHASES, colors):
                vals = _values(rs, key)
                h = float(np.mean(vals)) if vals else 0.0
                ax.bar(x, h, bottom=bottom, width=0.8, color=color,
                       label=name if not positions else None)
                bottom += h
            positions.append(x)
            labels.append(f"{method}\nk={k}")
            x += 1.0
        x += 0.6  # gap between k groups
    ax.set_xticks(positions)
    ax.set_xticklabels(labels, fontsize="small", rotation=45 if len(positions) > 8 else 0)
    ax.set_ylabel("time (s)")
    ax.set_title("time per phase")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def plot_continual(records: Sequence[Mapping[str, Any]], path: PathLike) -> Path:
    """PNG with two panels, D_r and D_test accuracy (%) after each deletion request (x = request number,
    0 = the original model) per method, mean over seeds with sample-std error bars.

    The request-0 point comes from records with ``request == 0`` if there are any, otherwise from the
    ``acc_retain_before`` / ``acc_test_before`` of the method's first request.
    """
    records = list(records)
    _require(records, ["method", "request"], "plot continual unlearning")
    fig = _figure((10, 4))
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "acc_retain", "D_r accuracy"), (axes[1], "acc_test", "D_test accuracy")):
        for method in _methods(records):
            rs = [r for r in records if r["method"] == method]
            by_req = {key_[0]: group for key_, group in _group(rs, "request").items()}
            reqs = sorted(by_req)
            groups = {q: _values(by_req[q], key) for q in reqs}
            if 0 not in groups and reqs:
                first = _one_per_seed(by_req[reqs[0]])
                groups[0] = _values(first, f"{key}_before")
            xs = sorted(groups)
            _errorbar_series(ax, xs, [groups[q] for q in xs], str(method))
        ax.set_xlabel("request (0 = original)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return _save(fig, path)
