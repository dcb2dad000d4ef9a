"""Registry of unlearning methods: ``get_method(name)``, ``list_methods()``, ``register_method(cls)``."""
from __future__ import annotations

from typing import Dict, List, Type

from ..errors import ConfigError
from .adv import Adv
from .base import MethodContext, StepBatch, UnlearningMethod
from .l2ul import L2UL
from .neggrad import NegGrad
from .oracle import Oracle

_REGISTRY: Dict[str, Type[UnlearningMethod]] = {}


def register_method(cls: Type[UnlearningMethod]) -> Type[UnlearningMethod]:
    """Register a method class under ``cls.name`` (usable as a decorator)."""
    _REGISTRY[cls.name] = cls
    return cls


for _cls in (NegGrad, Adv, L2UL, Oracle):
    register_method(_cls)


def list_methods() -> List[str]:
    return sorted(_REGISTRY)


def get_method(name) -> UnlearningMethod:
    """An instance of the method called ``name`` (or ``name`` itself if it already is a method)."""
    if isinstance(name, UnlearningMethod):
        return name
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(list_methods())}")
    return _REGISTRY[name]()


__all__ = ["UnlearningMethod", "StepBatch", "MethodContext", "register_method", "get_method", "list_methods"]
