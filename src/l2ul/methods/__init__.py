"""Unlearning methods: one file per method, each a class decorated with ``@register_method``.

``get_method(name)``, ``list_methods()``, ``register_method(cls)``; ingredients in :mod:`.ingredients`.
"""
from . import (  # noqa: F401  (each registers its method)
    adv,
    amun,
    bad_teacher,
    boundary_shrink,
    jit,
    l2ul,
    neggrad,
    oracle,
    random_labels,
    repair,
    salun,
    scrub,
    suli,
)
from ._registry import get_method, list_methods, register_method, unregister_method
from .base import MethodContext, Phase, StepBatch, UnlearningMethod, bn_forward, cycle_batches, sgd
from .ingredients import get_ingredient, list_ingredients, register_ingredient

__all__ = ["UnlearningMethod", "StepBatch", "MethodContext", "Phase", "register_method", "unregister_method",
           "get_method", "list_methods", "register_ingredient", "list_ingredients", "get_ingredient",
           "bn_forward", "cycle_batches", "sgd"]
