"""Getting a model to run on a dataset: :func:`load_model_from` and :func:`check_fit`.

:func:`load_model_from` is the one way a model enters a command: an l2ul model file (``model=FILE``), or a
foreign checkpoint loaded into a registered architecture (``arch=NAME, weights=PATH``).
:func:`check_fit` is the one check that a model accepts a dataset's images and has its class count; it
runs before any work starts, so a mismatch is a one-line :class:`~l2ul.errors.DataError`, not a failure
deep inside training or unlearning. :func:`adopt_class_names` gives a model without class names (a foreign
checkpoint) those of the dataset it fits, so the files written from it carry them.
"""
from __future__ import annotations

import os
from typing import Optional, Union

import torch
from torch import nn

from .data import DatasetBundle
from .errors import ConfigError, DataError, L2ULError
from .evaluation import predict
from .models import NormalizedClassifier
from .models.io import import_state_dict, load_model

__all__ = ["load_model_from", "check_fit", "adopt_class_names"]

PathLike = Union[str, os.PathLike]


def load_model_from(*, model: Optional[PathLike] = None, arch: Optional[str] = None,
                    weights: Optional[PathLike] = None, num_classes: Optional[int] = None) -> NormalizedClassifier:
    """The model named by exactly one source, in eval mode on the CPU.

    - ``model=FILE``: an l2ul model file (:func:`l2ul.models.load_model`); ``num_classes``, if given, must
      equal the file's class count.
    - ``arch=NAME, weights=PATH``: a foreign checkpoint loaded strictly into architecture ``NAME``
      (:func:`l2ul.models.import_state_dict`); ``num_classes=None`` infers the class count from the final
      layer, so a checkpoint for another class count is reported by :func:`check_fit` as a class-count
      mismatch rather than as mismatching tensors.

    Raises :class:`~l2ul.errors.ConfigError` for a missing or contradictory combination of arguments and
    :class:`~l2ul.errors.ModelFileError` for a file that cannot be read.
    """
    for name, value in (("model", model), ("weights", weights)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f"{name} must be a file path, got {type(value).__name__} {value!r}")
    if arch is not None and not isinstance(arch, str):
        raise ConfigError(f"arch must be an architecture name (see l2ul.models.list_models()), got {arch!r}")
    if model is not None and (arch is not None or weights is not None):
        raise ConfigError("give either model=FILE (an l2ul model file) or arch=NAME with weights=PATH, not both")
    if model is not None:
        from .publish import check_published

        check_published(model)          # never a model whose publish was interrupted
        loaded = load_model(model)
        n = loaded.l2ul_meta["num_classes"]
        if num_classes is not None and num_classes != n:
            raise ConfigError(f"model {model} has {n} classes but num_classes={num_classes!r} was given; "
                              "leave num_classes out with model=FILE (the file records it)")
        return loaded
    if arch is not None and weights is not None:
        return import_state_dict(arch, weights, num_classes=num_classes)
    if arch is not None or weights is not None:
        given, missing = ("arch", "weights") if arch is not None else ("weights", "arch")
        raise ConfigError(f"{given} needs {missing}: pass arch=NAME with weights=PATH (a checkpoint for that "
                          "architecture), or model=FILE for an l2ul model file")
    raise ConfigError("no model given: pass model=FILE (an l2ul model file) or arch=NAME with weights=PATH")


def check_fit(model: nn.Module, bundle: DatasetBundle,
              device: Union[str, torch.device, None] = None) -> int:
    """Check that ``model`` accepts the images of ``bundle`` and has its class count; returns that count.

    Runs the first un-augmented training image through the model (eval mode, no gradients; the train/eval
    flags are restored; on ``device`` if given, else where the model's parameters are). Raises
    :class:`~l2ul.errors.DataError` if the forward pass fails for any reason (wrong channel count or image
    size, a model that does not return logits), if the output is not ``[1, num_classes]`` logits, or if
    the number of outputs differs from ``bundle.num_classes``.
    """
    if not isinstance(model, nn.Module):
        raise L2ULError(f"the model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(bundle, DatasetBundle):
        raise L2ULError(f"the dataset must be a DatasetBundle (l2ul.data.load_dataset), got {type(bundle).__name__}")
    x, _ = bundle.stack_train([0])
    try:
        logits = predict(model, (x, torch.zeros(1, dtype=torch.int64)), device=device, batch_size=1).logits
    except (MemoryError, torch.cuda.OutOfMemoryError):  # not a misfit: report it as it is
        raise
    except Exception as e:  # noqa: BLE001 - any failure here means the model does not fit the images
        lines = str(e).strip().splitlines()
        reason = f"{type(e).__name__}: {lines[0][:160]}" if lines else type(e).__name__
        raise DataError(f"the model cannot process {bundle.name} images of shape {tuple(x.shape[1:])} "
                        f"({reason}); use a model built for this dataset") from None
    if logits.dim() != 2 or logits.shape[0] != 1:
        raise DataError(f"the model returned outputs of shape {list(logits.shape)} for one {bundle.name} image; "
                        "expected logits shaped [1, num_classes]; use an image classifier")
    n = int(logits.shape[1])
    if n != bundle.num_classes:
        raise DataError(f"the model has {n} classes but the dataset {bundle.name} has {bundle.num_classes}; "
                        f"use a model trained on this dataset (one with num_classes={bundle.num_classes})")
    return n


def adopt_class_names(model: nn.Module, bundle: DatasetBundle) -> bool:
    """Give an l2ul model that has no class names (one imported from a foreign checkpoint) the dataset's, one
    per class, in the model's metadata (what :func:`l2ul.models.save_model` writes); call it after
    :func:`check_fit`. A model with names of its own keeps them. Returns whether names were adopted."""
    meta = getattr(model, "l2ul_meta", None)
    names = bundle.class_names
    if not isinstance(meta, dict) or meta.get("class_names") is not None or not names:
        return False
    if len(names) != meta.get("num_classes", len(names)):
        return False
    meta["class_names"] = [str(c) for c in names]
    return True
