"""The method registry: ``@register_method`` (a decorator on the class), ``list_methods()``, ``get_method()``."""
from __future__ import annotations

from typing import Dict, List, Type, Union

from ..errors import ConfigError
from .base import UnlearningMethod

_REGISTRY: Dict[str, Type[UnlearningMethod]] = {}


def register_method(cls: Type[UnlearningMethod]) -> Type[UnlearningMethod]:
    """Register a method class under ``cls.name`` (a decorator). Registering a name again replaces it."""
    if not (isinstance(cls, type) and issubclass(cls, UnlearningMethod)):
        raise TypeError("register_method takes a subclass of l2ul.methods.UnlearningMethod")
    _REGISTRY[cls.name] = cls
    return cls


def unregister_method(name: str) -> None:
    """Remove a registered method (for tests and plugins)."""
    _REGISTRY.pop(name, None)


def list_methods() -> List[str]:
    return sorted(_REGISTRY)


def get_method(name: Union[str, UnlearningMethod]) -> UnlearningMethod:
    """An instance of the method called ``name`` (or ``name`` itself if it already is a method)."""
    if isinstance(name, UnlearningMethod):
        return name
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(list_methods())}")
    return _REGISTRY[name]()
