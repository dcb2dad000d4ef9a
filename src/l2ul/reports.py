"""Reports: JSON files, plain-text and markdown tables, the paper's results table and plots.

Every file is written atomically (:mod:`l2ul.safety`), so an interrupted run never leaves a half-written
report. The plots live in :mod:`l2ul.plots` and are re-exported here; the paper table's metric columns take
their labels and number formats from :mod:`l2ul.metrics`.

Benchmark *records* are flat dicts, one per (method, k, seed) run, with the keys ``method``, ``k``, ``seed``,
``acc_forget``, ``acc_retain``, ``acc_test`` (after unlearning, in [0, 1]), the same three with ``_before``
(the original model), ``mia_efficacy`` (optionally ``mia_efficacy_before``), ``loss_auc`` (optionally
``loss_auc_before``), ``steps``, ``converged`` (bool) and ``time_adversarial``, ``time_importance``,
``time_optimization`` (seconds). Missing or ``None`` values are shown as ``-`` and left out of means.
Continual-request records are described in :mod:`l2ul.plots`.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
from pathlib import Path, PurePath
from typing import Any, Iterable, List, Mapping, Sequence, Tuple, Union

import numpy as np

from ._records import _group, _ks, _mean_std, _methods, _one_per_seed, _require, _stat, _values  # noqa: F401
from .errors import L2ULError
from .metrics import metric_info
from .plots import _PHASES, _errorbar_series, _figure, _save, plot_continual, plot_phase_times, plot_vs_k  # noqa: F401
from .privacy import MIA_MIN_SIGNAL_Z, mia_signal_z
from .safety import PathLike, atomic_write

__all__ = [
    "to_jsonable",
    "write_json",
    "read_json",
    "format_table",
    "table_cells",
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


def table_cells(rows: Iterable[Any], columns: Columns, *, floatfmt: str = ".4f") -> Tuple[List[str], List[List[str]]]:
    """The headers and the formatted cells of a table (what :func:`format_table`, :func:`markdown_table` and
    the CLI's terminal tables lay out).

    ``rows`` are dicts (looked up by column key) or sequences (by position). ``columns`` are keys, (key,
    header) pairs or a mapping key -> header. Floats use ``floatfmt``, bools print yes/no, missing values
    ``-``.
    """
    cols = _columns(columns)
    return [h for _, h in cols], _cells(rows, cols, floatfmt)


def format_table(rows: Iterable[Any], columns: Columns, *, floatfmt: str = ".4f") -> str:
    """An aligned plain-text table (see :func:`table_cells` for ``rows`` and ``columns``): the first column
    left-aligned, the others right-aligned. Stable, greppable output for logs and pipes (the CLI draws a rich
    table instead when stdout is a terminal)."""
    headers, body = table_cells(rows, columns, floatfmt=floatfmt)
    widths = [max([len(headers[i])] + [len(r[i]) for r in body]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)]
        return "  ".join(parts).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in body)
    return "\n".join(out)


def markdown_table(rows: Iterable[Any], columns: Columns, *, floatfmt: str = ".4f") -> str:
    """A GitHub-flavoured markdown table (first column left-aligned, others right-aligned); see
    :func:`table_cells` for ``rows`` and ``columns``. Written here rather than by a library: rich draws
    terminal tables, not markdown, and these few lines are pinned by the bench's table tests."""
    headers, body = table_cells(rows, columns, floatfmt=floatfmt)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(esc(h) for h in headers) + " |",
           "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    out.extend("| " + " | ".join(esc(c) for c in r) + " |" for r in body)
    return "\n".join(out)


# -------------------------------------------------------------------------------------------- paper table
def _metric_stat(records: Sequence[Mapping[str, Any]], key: str) -> str:
    """:func:`_stat` of metric ``key`` over ``records``, scaled and rounded as :mod:`l2ul.metrics` says."""
    info = metric_info(key)
    return _stat(_values(records, key), scale=info.scale, decimals=info.decimals)


#: the marker of an MIA-efficacy cell where, in at least one run, the attack found no membership signal
MIA_UNINFORMATIVE_MARK = "†"


def _mia_uninformative(records: Iterable[Mapping[str, Any]], suffix: str = "") -> int:
    """How many of ``records`` carry an MIA efficacy whose attack did no better than chance
    (:func:`l2ul.privacy.mia_signal_z` below :data:`~l2ul.privacy.MIA_MIN_SIGNAL_Z`). Computed from the
    stored attack accuracy and sample count, so records written before the check are judged too."""
    n = 0
    for r in records:
        if r.get("mia_efficacy" + suffix) is None:
            continue
        z = mia_signal_z(r.get("mia_attack_train_acc" + suffix), r.get("mia_n_per_class" + suffix))
        n += int(z < MIA_MIN_SIGNAL_Z)  # nan (no attack accuracy stored) compares False: not flagged
    return n


def _mia_cell(records: Sequence[Mapping[str, Any]], suffix: str = "") -> str:
    cell = _metric_stat(records, "mia_efficacy" + suffix)
    bad = _mia_uninformative(records, suffix)
    if bad:
        n = len(_values(records, "mia_efficacy" + suffix))
        cell += f" {MIA_UNINFORMATIVE_MARK}" + (f"{bad}/{n}" if n > 1 else "")
    return cell


def _mia_footnote() -> str:
    return (f"{MIA_UNINFORMATIVE_MARK}: in these runs (n/N: n of N seeds) the MIA attack did no better than "
            f"chance on its own training data (balanced accuracy within {MIA_MIN_SIGNAL_Z:g} standard errors of "
            "50%), so its efficacy on D_f carries no information; read the loss AUC instead.")


#: the paper table's single-metric columns, labelled by :func:`l2ul.metrics.metric_info`
_PAPER_METRICS = ("acc_forget", "acc_retain", "acc_test", "mia_efficacy", "loss_auc")
_PAPER_OTHER_COLUMNS = ["steps", "converged", "t_adv (s)", "t_imp (s)", "t_opt (s)", "t_total (s)", "data used"]


def _paper_columns() -> List[str]:
    return ["Method"] + [metric_info(k).label for k in _PAPER_METRICS] + _PAPER_OTHER_COLUMNS


def _data_used(method: str, records: Sequence[Mapping[str, Any]]) -> str:
    """What a method's runs used besides the model and the forget set: ``remaining data`` (a method that
    requires it), ``unlabeled proxy`` (runs given proxy images), else ``none`` (a data-free repair included)."""
    from .methods import get_method
    from .methods.repair import DATA_FREE_SOURCE

    try:
        needs = get_method(method).data
    except L2ULError:          # a record of a method this install does not have
        return "-"
    if "retain" in needs:
        return "remaining data"
    if any(r.get("proxy") and not str(r["proxy"]).startswith(DATA_FREE_SOURCE) for r in records):
        return "unlabeled proxy"
    return "none"


def paper_table(records: Sequence[Mapping[str, Any]]) -> str:
    """Markdown results in the paper's layout: one block per k, one row per method plus a ``before`` row
    (the original model), accuracy on D_f / D_r / D_test in %, then MIA efficacy (%), loss AUC, optimisation
    steps, converged runs (n/N), seconds per phase (adversarial, importance, optimisation: the forget phase) and
    in all (every phase, the repair's too), and the data the method used besides the model and the forget set
    (``none``, ``unlabeled proxy`` or ``remaining data``).

    With several seeds a cell shows ``mean ± std`` (sample standard deviation over seeds). Methods keep the
    order of their first appearance, those that use the remaining training data after the others; k ascends.
    The ``before`` row averages one record per seed. An MIA
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
                     _metric_stat(base, "acc_forget_before"),
                     _metric_stat(base, "acc_retain_before"),
                     _metric_stat(base, "acc_test_before"),
                     _mia_cell(base, "_before"),
                     _metric_stat(base, "loss_auc_before"),
                     "-", "-", "-", "-", "-", "-", "-"])
        by_method = {m: [r for r in at_k if r["method"] == m] for m in _methods(at_k)}
        used = {m: _data_used(m, rs) for m, rs in by_method.items()}
        # methods that read the remaining training data after those that do not (a stable sort)
        for method in sorted(by_method, key=lambda m: used[m] == "remaining data"):
            rs = by_method[method]
            conv = [bool(r["converged"]) for r in rs if r.get("converged") is not None]
            rows.append([str(method),
                         _metric_stat(rs, "acc_forget"),
                         _metric_stat(rs, "acc_retain"),
                         _metric_stat(rs, "acc_test"),
                         _mia_cell(rs),
                         _metric_stat(rs, "loss_auc"),
                         _stat(_values(rs, "steps"), decimals=1),
                         f"{sum(conv)}/{len(conv)}" if conv else "-",
                         _stat(_values(rs, "time_adversarial")),
                         _stat(_values(rs, "time_importance")),
                         _stat(_values(rs, "time_optimization")),
                         _stat(_values(rs, "time_total")),
                         used[method]])
        seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
        blocks.append(f"### k = {k} ({seeds})\n\n" + markdown_table(rows, _paper_columns()))
    if _mia_uninformative(records) or _mia_uninformative(records, "_before"):
        blocks.append(_mia_footnote())
    return "\n\n".join(blocks) + "\n"
