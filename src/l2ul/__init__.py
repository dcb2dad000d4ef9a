"""l2ul: instance-wise machine unlearning of pre-trained image classifiers.

>>> import l2ul
>>> result = l2ul.unlearn(model, forget_images, forget_labels, method="l2ul")
>>> result.converged, result.steps, result.timings

The public names below are imported on first use (a module ``__getattr__``, PEP 562): ``import l2ul`` and
``l2ul --help`` do not import torch; ``l2ul.unlearn`` and the rest load their module when first read.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, List

__version__ = "0.4.0.dev0"

#: public name -> the module (relative to l2ul) that defines it; ``None``: the name is that submodule
_EXPORTS: Dict[str, Any] = {
    "unlearn": "engine", "UnlearnResult": "engine", "resolve_device": "engine",
    "UnlearnConfig": "config", "PRESETS": "config",
    "TargetedL2PGD": "attacks", "AdversarialSet": "attacks", "generate_adversarial_set": "attacks",
    "random_other_labels": "attacks",
    "mas_importance": "importance", "normalize_importance": "importance",
    "UnlearningMethod": "methods", "get_method": "methods", "list_methods": "methods",
    "register_method": "methods",
    "NormalizedClassifier": "models", "create_model": "models", "list_models": "models",
    "register_model": "models",
    "load_model": "models.io", "save_model": "models.io", "import_state_dict": "models.io",
    "DatasetBundle": "data", "load_dataset": "data", "DeletionRequest": "requests",
    "L2ULError": "errors", "ConfigError": "errors", "DataError": "errors", "ModelFileError": "errors",
    "RequestError": "errors",
    "run_request": "pipeline", "RequestOutcome": "pipeline",
    "proxy": None, "synthesis": None,
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'l2ul' has no attribute {name!r}")
    where = _EXPORTS[name]
    if where is None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value  # (read once: later reads find it in the module)
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
