"""Benchmark records (flat dicts, one per run; see :mod:`l2ul.reports`): selecting, grouping and averaging
them over seeds, for the tables of :mod:`l2ul.reports` and the plots of :mod:`l2ul.plots`."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

import numpy as np

from .errors import L2ULError


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
