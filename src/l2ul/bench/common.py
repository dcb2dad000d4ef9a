"""What the grid (:mod:`l2ul.bench.grid`) and continual (:mod:`l2ul.bench.continual`) modes share: the
defaults, the checks of their arguments, the model on its device and the timing fields of a record."""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, Iterable, List, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..methods import get_method, list_methods

__all__ = ["DEFAULT_METHODS", "DEFAULT_KS", "RECORD_CONFIG_FIELDS", "Log", "resolve_methods", "int_list",
           "model_on", "phase_times"]

DEFAULT_METHODS = ("neggrad", "adv", "l2ul", "oracle")
DEFAULT_KS = (1, 8, 16, 32, 64, 128)
#: config fields copied into every record
RECORD_CONFIG_FIELDS = ("lr", "pgd_eps", "pgd_steps", "adv_per_instance", "bn", "forget_loss", "reg_lambda",
                        "max_steps")

Log = Callable[[str], Any]


def resolve_methods(methods: Sequence[str]) -> List[str]:
    """Canonical names of ``methods`` (a sequence or a comma list), in order, without repeats; raises
    :class:`ConfigError` for an unknown name or for none."""
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    out: List[str] = []
    for m in methods:
        name = get_method(m).name   # raises ConfigError for unknown names
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError(f"no methods given; choose from {', '.join(list_methods())}")
    return out


def int_list(values: Iterable[Any], what: str, *, minimum: int) -> List[int]:
    """``values`` as distinct ints (first occurrence kept), each at least ``minimum``; else :class:`ConfigError`."""
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < minimum:
            raise ConfigError(f"{what} must be integers >= {minimum}, got {v!r}")
        if int(v) not in out:
            out.append(int(v))
    if not out:
        raise ConfigError(f"give at least one {what[:-1] if what.endswith('s') else what}")
    return out


def model_on(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` itself if all its tensors are on ``device``, else an eval-mode copy there."""
    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.device == device for t in tensors):
        return model
    return copy.deepcopy(model).to(device).eval()


def phase_times(timings: Dict[str, float], phases=()) -> Dict[str, Any]:
    """The record fields of an engine result's ``timings`` (``time_<name>`` for the three phases of 0.2 and
    every other ingredient or phase the method timed) and their sum ``time_total``; with more than one
    optimisation phase also ``steps_<phase>``."""
    rec: Dict[str, Any] = {"time_adversarial": float(timings.get("adversarial", 0.0)),
                           "time_importance": float(timings.get("importance", 0.0)),
                           "time_optimization": float(timings.get("optimization", 0.0))}
    for name, sec in timings.items():
        rec.setdefault(f"time_{name}", float(sec))
    rec["time_total"] = sum(v for v in rec.values())
    if len(phases) > 1:
        rec.update({f"steps_{p['name']}": p["steps"] for p in phases})
    return rec
