"""Ingredients: what a method prepares from the original model and the forget set before optimising.

Each ingredient is registered once by name with the function that prepares it and (optionally) the function
that adopts a precomputed value (moves it to the run's device and checks it belongs to this forget set). A
method lists the names it needs in ``UnlearningMethod.ingredients``; the engine prepares them in that order,
times each under its name in ``UnlearnResult.timings``, and returns them in ``UnlearnResult.ingredients`` so
that a caller (e.g. ``l2ul bench``) can pass them to another method on the same request. A new ingredient is
one ``@register_ingredient`` function here or in the method's own file.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import torch

from ..attacks import AdversarialSet, make_adversarial_set
from ..errors import ConfigError, RequestError
from ..importance import ImportanceWeights, mas_importance, normalize_importance
from .base import MethodContext


@dataclass(frozen=True)
class Ingredient:
    """``prepare(ctx)`` returns the value (with a ``seconds`` attribute when it times itself);
    ``adopt(value, ctx)`` takes a precomputed value for this run (default: as it is)."""

    name: str
    prepare: Callable[[MethodContext], Any]
    adopt: Optional[Callable[[Any, MethodContext], Any]] = None
    description: str = ""


_INGREDIENTS: Dict[str, Ingredient] = {}


def register_ingredient(name: str, *, adopt: Optional[Callable[[Any, MethodContext], Any]] = None,
                        description: str = ""):
    """Decorator: register ``fn(ctx) -> value`` as the preparation of ingredient ``name``."""

    def decorator(fn: Callable[[MethodContext], Any]) -> Callable[[MethodContext], Any]:
        _INGREDIENTS[name] = Ingredient(name, fn, adopt, description or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return decorator


def list_ingredients() -> List[str]:
    return sorted(_INGREDIENTS)


def get_ingredient(name: str) -> Ingredient:
    if name not in _INGREDIENTS:
        raise ConfigError(f"unknown ingredient {name!r}; registered: {', '.join(list_ingredients())}")
    return _INGREDIENTS[name]


def prepare(name: str, ctx: MethodContext, given: Any = None) -> Any:
    """Ingredient ``name`` for the run ``ctx``: ``given`` adopted if not ``None``, else prepared now.
    The value's ``seconds`` attribute is its preparation time (carried over for a given one)."""
    ing = get_ingredient(name)
    if given is not None:
        return ing.adopt(given, ctx) if ing.adopt else given
    t0 = time.perf_counter()
    value = ing.prepare(ctx)
    if getattr(value, "seconds", None) in (None, 0.0):
        try:
            value.seconds = time.perf_counter() - t0
        except AttributeError:  # a value that cannot carry it (e.g. a tensor): its time is not reported
            pass
    return value


def seconds_of(value: Any) -> float:
    return float(getattr(value, "seconds", 0.0) or 0.0)


# ------------------------------------------------------------------------------------------- the ingredients

def _adopt_adversarial(adv: AdversarialSet, ctx: MethodContext) -> AdversarialSet:
    if int(adv.source.max()) >= ctx.x_forget.shape[0]:
        raise RequestError("the precomputed adversarial set does not belong to this forget set")
    d = ctx.device
    return AdversarialSet(adv.images.to(d), adv.labels.to(d), adv.source.to(d), adv.seconds)


@register_ingredient("adversarial", adopt=_adopt_adversarial)
def adversarial(ctx: MethodContext) -> AdversarialSet:
    """Targeted L2-PGD adversarial examples of the forget set on the original model (adv_per_instance each,
    toward random wrong labels; the run's generator)."""
    return make_adversarial_set(ctx.model, ctx.x_forget, ctx.y_forget, ctx.num_classes, ctx.config,
                                generator=ctx.generator, progress=ctx.progress)


def _adopt_importance(imp: Dict[str, torch.Tensor], ctx: MethodContext) -> ImportanceWeights:
    weights = ImportanceWeights({n: w.to(ctx.device) for n, w in imp.items()})
    weights.seconds = float(getattr(imp, "seconds", 0.0))
    return weights


@register_ingredient("importance", adopt=_adopt_importance)
def importance(ctx: MethodContext) -> ImportanceWeights:
    """MAS weight importance on the forget set, normalised to anchor weights 1 - minmax (per tensor)."""
    return normalize_importance(mas_importance(ctx.model, ctx.x_forget))
