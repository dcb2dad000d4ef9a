"""l2ul: instance-wise machine unlearning of pre-trained image classifiers.

>>> import l2ul
>>> result = l2ul.unlearn(model, forget_images, forget_labels, method="l2ul")
>>> result.converged, result.steps, result.timings
"""
__version__ = "0.3.0"

from . import proxy, synthesis  # noqa: E402,F401  (l2ul.proxy.load_proxy, l2ul.synthesis)
from .attacks import AdversarialSet, TargetedL2PGD, generate_adversarial_set, random_other_labels
from .config import PRESETS, UnlearnConfig
from .data import DatasetBundle, load_dataset
from .engine import UnlearnResult, resolve_device, unlearn
from .errors import ConfigError, DataError, L2ULError, ModelFileError, RequestError
from .importance import mas_importance, normalize_importance
from .methods import UnlearningMethod, get_method, list_methods, register_method
from .models import NormalizedClassifier, create_model, list_models, register_model
from .models.io import import_state_dict, load_model, save_model
from .pipeline import RequestOutcome, run_request
from .requests import DeletionRequest

__all__ = [
    "__version__", "unlearn", "UnlearnConfig", "UnlearnResult", "PRESETS", "resolve_device",
    "TargetedL2PGD", "AdversarialSet", "generate_adversarial_set", "random_other_labels",
    "mas_importance", "normalize_importance",
    "UnlearningMethod", "get_method", "list_methods", "register_method",
    "NormalizedClassifier", "create_model", "list_models", "register_model", "load_model", "save_model",
    "import_state_dict", "DatasetBundle", "load_dataset", "DeletionRequest",
    "L2ULError", "ConfigError", "DataError", "ModelFileError", "RequestError", "run_request", "RequestOutcome",
    "proxy", "synthesis",
]
