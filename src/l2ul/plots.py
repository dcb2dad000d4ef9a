"""Plots of benchmark records: accuracy against k, time per phase, continual requests (PNG files).

They use matplotlib's Agg canvas directly (no pyplot global state, no display needed); matplotlib is imported
only when a plot is drawn. Every file is written atomically (:mod:`l2ul.safety`). The records are those of
:mod:`l2ul.reports` (which re-exports these functions); continual-request records (:func:`plot_continual`)
use ``method``, ``request`` (1, 2, ...; 0 = the original), ``acc_retain``, ``acc_test``, optional ``seed``
and optional ``acc_retain_before`` / ``acc_test_before``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence, Tuple

import numpy as np

from ._records import _group, _ks, _mean_std, _methods, _one_per_seed, _require, _values
from .safety import PathLike, atomic_path

__all__ = ["plot_vs_k", "plot_phase_times", "plot_continual"]


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
