"""Model registry: build classifiers by name, timm-style.

Every model l2ul creates is a :class:`NormalizedClassifier`: it takes NCHW float images in [0, 1],
normalises them (and optionally resizes them) inside the model and returns logits as a plain tensor. It
carries ``l2ul_meta`` (architecture name and options, classes, normalisation), which is what
:func:`save_model` writes next to the weights so :func:`load_model` can rebuild the model without pickles.

>>> from l2ul.models import create_model, list_models
>>> model = create_model("resnet20", num_classes=10)                      # random init
>>> model = create_model("resnet20", weights="cifar10_resnet20.th")       # foreign checkpoint  # doctest: +SKIP
>>> model = create_model("tv:mobilenet_v3_small", num_classes=1000, pretrained=True)  # download # doctest: +SKIP

Names: see :func:`list_models`; in addition ``tv:<name>`` builds any torchvision classification model and
``timm:<name>`` (or ``timm/<name>``) any timm model (extra: ``pip install 'l2ul[timm]'``).
Custom architectures: :func:`register_model` (see :mod:`l2ul.models._registry`).

Layout: ``_registry`` (specs, :func:`register_model`, :func:`list_models`, :func:`model_info`),
``_factory`` (:func:`create_model`), ``classifier`` (:class:`NormalizedClassifier`), ``io`` (model files),
``_file_meta`` (the check of a model file's metadata), ``_checkpoint`` (foreign checkpoints,
:func:`check_finite_model`), and one module per model family, imported here so they register.
"""
from __future__ import annotations

# the built-in families register themselves on import (they import only _registry and classifier)
from . import cifar_resnet, hf_vit, paper_resnet, small, timm_models, torchvision_models  # noqa: F401
from ._factory import create_model
from ._registry import ModelSpec, list_models, model_info, register_model
from .classifier import IMAGENET_MEAN, IMAGENET_STD, NormalizedClassifier
from .io import check_finite_model, import_state_dict, load_model, model_sha256, save_model

__all__ = [
    "NormalizedClassifier", "ModelSpec", "register_model", "create_model", "list_models", "model_info",
    "save_model", "load_model", "import_state_dict", "model_sha256", "check_finite_model", "IMAGENET_MEAN",
    "IMAGENET_STD",
]
