"""The metric registry: what each key of an evaluation means, how to label it and how to print it.

:func:`l2ul.evaluation.split_metrics` and :func:`l2ul.evaluation.evaluate_unlearning` return flat dicts of
numbers; each of their keys has one :class:`MetricInfo` here (its short label, whether it is a share shown in
percent, a one-line meaning and which way is better). A key ``x_before`` (the original model's value of
``x``) is described by ``x``'s entry. Keys that are counts or details rather than metrics are listed in
:data:`NON_METRIC_KEYS`.

>>> metric_info("acc_retain").label
'D_r (%)'
>>> format_metric("acc_retain", 0.9512)
'95.12%'
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .errors import ConfigError, L2ULError

__all__ = ["MetricInfo", "DIRECTIONS", "NON_METRIC_KEYS", "BEFORE_SUFFIX", "register_metric",
           "unregister_metric", "list_metrics", "metric_info", "format_metric", "metric_rows"]

#: direction -> how to read it; ``None`` marks a reference level or diagnostic with no better direction
DIRECTIONS: Dict[Optional[str], str] = {
    "higher": "higher is better",
    "lower": "lower is better",
    "0.5": "0.5 is ideal",
    None: "no better direction (a reference level or diagnostic)",
}

#: suffix of the original model's value of a metric in :func:`~l2ul.evaluation.evaluate_unlearning`
BEFORE_SUFFIX = "_before"

#: keys of :func:`~l2ul.evaluation.evaluate_unlearning` that are not metrics (sizes and per-sample details)
NON_METRIC_KEYS = ("n_forget", "n_retain", "n_test", "per_instance")


@dataclass(frozen=True)
class MetricInfo:
    """One metric: ``key`` (as in the evaluation dicts), ``label`` (short, for table headers),
    ``percent`` (a share in [0, 1] shown as a percentage), ``meaning`` (one line), ``direction`` (a key of
    :data:`DIRECTIONS`) and ``decimals`` (printed after scaling to percent)."""

    key: str
    label: str
    percent: bool
    meaning: str
    direction: Optional[str]
    decimals: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ConfigError(f"a metric key must be a non-empty string, got {self.key!r}")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"metric {self.key!r}: direction must be one of "
                              f"{', '.join(repr(d) for d in DIRECTIONS)}, got {self.direction!r}")
        if isinstance(self.decimals, bool) or not isinstance(self.decimals, int) or self.decimals < 0:
            raise ConfigError(f"metric {self.key!r}: decimals must be a non-negative integer, got {self.decimals!r}")

    @property
    def better(self) -> str:
        """The direction in words, e.g. ``"higher is better"``."""
        return DIRECTIONS[self.direction]

    @property
    def scale(self) -> float:
        """Factor from the stored value to the printed one (100 for percentages)."""
        return 100.0 if self.percent else 1.0

    def format(self, value: Any) -> str:
        """``value`` as printed: scaled, with ``decimals`` digits and ``%`` for percentages; ``-`` for None."""
        if value is None:
            return "-"
        v = float(value) * self.scale
        text = f"{v:.{self.decimals}f}"
        return text + "%" if self.percent and math.isfinite(v) else text


_REGISTRY: Dict[str, MetricInfo] = {}


def register_metric(key: str, label: str, *, percent: bool, meaning: str, direction: Optional[str],
                    decimals: int = 2) -> MetricInfo:
    """Register (or replace) the description of metric ``key``; returns its :class:`MetricInfo`.

    ``key`` must not end in ``_before``: the original model's value is described by the base key's entry.
    """
    if isinstance(key, str) and key.endswith(BEFORE_SUFFIX):
        raise ConfigError(f"register the metric {key[:-len(BEFORE_SUFFIX)]!r}, not {key!r}; the "
                          f"'{BEFORE_SUFFIX}' value of a metric is described by its own entry")
    info = MetricInfo(key=key, label=label, percent=bool(percent), meaning=meaning, direction=direction,
                      decimals=decimals)
    _REGISTRY[key] = info
    return info


def unregister_metric(key: str) -> None:
    """Remove a registered metric (for tests and plugins)."""
    _REGISTRY.pop(key, None)


def list_metrics() -> List[str]:
    """The registered metric keys, in the order they were first registered."""
    return list(_REGISTRY)


def metric_info(key: str) -> MetricInfo:
    """The :class:`MetricInfo` of ``key``; for ``x_before`` that of ``x`` (with ``key`` and ``meaning``
    naming the original model). Raises :class:`~l2ul.errors.L2ULError` for an unknown key."""
    if key in _REGISTRY:
        return _REGISTRY[key]
    if isinstance(key, str) and key.endswith(BEFORE_SUFFIX) and key[:-len(BEFORE_SUFFIX)] in _REGISTRY:
        base = _REGISTRY[key[:-len(BEFORE_SUFFIX)]]
        return dataclasses.replace(base, key=key, meaning=f"{base.meaning} (the original model, before unlearning)")
    raise L2ULError(f"unknown metric {key!r}; registered metrics: {', '.join(list_metrics())}")


def format_metric(key: str, value: Any) -> str:
    """``value`` of metric ``key`` as printed, e.g. ``format_metric("acc_test", 0.9)`` -> ``"90.00%"``,
    ``format_metric("loss_auc", 0.5)`` -> ``"0.500"``; ``None`` -> ``"-"``."""
    return metric_info(key).format(value)


def metric_rows(metrics: Mapping[str, Any], keys: Optional[Sequence[str]] = None) -> List[Dict[str, str]]:
    """The printed rows of an evaluation dict, one per metric of ``keys`` (default: every registered metric)
    present in ``metrics``: ``{"metric": label, "before": ..., "after": ..., "better": ...}``, the values
    formatted by the registry (``before`` is ``""`` when ``metrics`` holds no ``x_before``). What the CLI
    prints, so a metric registered once is printed everywhere by name."""
    rows = []
    for key in (list_metrics() if keys is None else keys):
        if key not in metrics:
            continue
        info = metric_info(key)
        before = metrics.get(key + BEFORE_SUFFIX, ...)
        rows.append({"metric": info.label, "before": "" if before is ... else info.format(before),
                     "after": info.format(metrics[key]), "better": info.better})
    return rows


# ------------------------------------------------------------------------------ the evaluation's metrics
for _key, _label, _percent, _direction, _decimals, _meaning in (
    ("acc_forget", "D_f (%)", True, "lower", 2,
     "accuracy on the forget set D_f; a model never trained on D_f scores about its D_test accuracy"),
    ("acc_retain", "D_r (%)", True, "higher", 2, "accuracy on the retain set D_r (training data minus D_f)"),
    ("acc_test", "D_test (%)", True, "higher", 2, "accuracy on held-out data D_test"),
    ("mia_efficacy", "MIA eff. (%)", True, "higher", 2,
     "share of D_f the confidence MIA calls non-member; a model never trained on D_f scores about mia_tnr_test"),
    ("mia_attack_train_acc", "MIA attack acc. (%)", True, "0.5", 2,
     "balanced accuracy of the MIA attack on its training data (D_r vs D_test); 50% = no membership signal"),
    ("mia_tnr_test", "MIA TNR D_test (%)", True, None, 2,
     "share of D_test the MIA attack calls non-member: the reference level for mia_efficacy"),
    ("mia_n_per_class", "MIA n/class", False, None, 0,
     "samples of each class (D_r members, D_test non-members) the MIA attack was fitted on"),
    ("mia_signal_z", "MIA signal z", False, None, 1,
     "the MIA attack's accuracy above chance in standard errors; below 3 its efficacy is uninformative"),
    ("loss_auc", "loss AUC", False, "0.5", 3,
     "ROC AUC of telling D_f from D_test by loss; 0.5 = like unseen data, 1 = recognisably trained on"),
    ("agreement_test", "agreement D_test (%)", True, "higher", 2,
     "share of D_test predictions the same as the original model's"),
    ("forget_success", "forget success (%)", True, "higher", 2,
     "share of D_f whose request is met (misclassified, or predicted as its relabel target)"),
):
    register_metric(_key, _label, percent=_percent, meaning=_meaning, direction=_direction, decimals=_decimals)
del _key, _label, _percent, _direction, _decimals, _meaning
