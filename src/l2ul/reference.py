"""The reference set of the ``unseen`` task: *labeled* images the model never saw (``--reference-data SPEC``).

The ``unseen`` task (:mod:`l2ul.unseen`) makes each forgotten instance look like data the model never saw,
and "never saw" is measured on images the owner designates: a validation split, or any labeled held-out
images of the same distribution. Their losses under the original model are the target; the training split
is refused (its losses are those of seen data). Specs:

``npz:PATH``
    an ``.npz`` with the images under ``x`` (as for ``--proxy-data``: uint8 NHWC/NHW or float NCHW in
    ``[0, 1]``) and their integer labels under ``y``.
``imagefolder:PATH``
    one sub-folder per class, named by the class's name (the dataset's class names) or its index
    (``PATH/cat/0001.png`` or ``PATH/3/0001.png``), image files at any depth below it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .errors import DataError
from .proxy import _load_imagefolder, _load_npz, _parse, list_image_files

__all__ = ["REFERENCE_SPECS", "load_reference", "describe_reference", "check_reference_not_training"]

REFERENCE_SPECS = [
    ("npz:PATH", "npz with images under key x and integer labels under key y"),
    ("imagefolder:PATH", "one sub-folder per class (its name or index), image files inside"),
]


def _npz_labels(path: Path, n: int, num_classes: int) -> np.ndarray:
    with np.load(path, allow_pickle=False) as d:
        if "y" not in d.files:
            raise DataError(f"reference npz {path} has no key 'y' (it has {', '.join(d.files)}); the reference "
                            "needs the labels: np.savez(path, x=images, y=labels)")
        y = d["y"]
    if y.dtype.kind not in "iu" or y.ndim != 1:
        raise DataError(f"reference npz {path}: y must be a 1-D integer array, got {y.dtype} of shape {y.shape}")
    if len(y) != n:
        raise DataError(f"reference npz {path}: {len(y)} labels for {n} images; give one label per image")
    return y.astype(np.int64)


def _folder_labels(root: Path, num_classes: int, class_names: Optional[Sequence[str]]) -> np.ndarray:
    files, _ = list_image_files(root)
    names = {str(c): i for i, c in enumerate(class_names or [])}
    labels = []
    for p in files:
        parts = p.relative_to(root).parts
        if len(parts) < 2:
            raise DataError(f"reference folder {root}: {p.name} is not inside a class sub-folder; put each image "
                            "in a folder named by its class (name or index)")
        c = parts[0]
        if c in names:
            labels.append(names[c])
        elif c.isdigit() and int(c) < num_classes:
            labels.append(int(c))
        else:
            known = ", ".join(list(names)[:10]) or f"0..{num_classes - 1}"
            raise DataError(f"reference folder {root}: sub-folder {c!r} is not a class of the model ({known})")
    return np.asarray(labels, dtype=np.int64)


def load_reference(spec: str, *, image_shape: Sequence[int], num_classes: int,
                   class_names: Optional[Sequence[str]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of the reference ``spec``: images float32 ``[N, C, H, W]`` in ``[0, 1]``
    (converted and, for folders, resized to ``image_shape``), labels int64 in ``[0, num_classes)``.
    Raises :class:`~l2ul.errors.DataError` with a one-line message for every bad input."""
    kind, path = _parse(spec)
    shape = tuple(int(s) for s in image_shape)
    if kind == "npz":
        x = _load_npz(path, shape, None, 0)
        y = _npz_labels(path, x.shape[0], num_classes)
    else:
        if path.is_dir():
            y = _folder_labels(path, num_classes, class_names)
        x = _load_imagefolder(path, shape, None, 0)
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(f"reference {spec}: labels lie in [{int(y.min())}, {int(y.max())}] but the model has "
                        f"{num_classes} classes")
    return x, torch.from_numpy(y)


def describe_reference(spec: str, reference: Tuple[torch.Tensor, torch.Tensor]) -> str:
    """One line for reports: ``"npz:/x/val.npz (5000 labeled images, 3x32x32)"``."""
    kind, path = _parse(spec)
    x = reference[0]
    return f"{kind}:{path} ({x.shape[0]} labeled images, {'x'.join(str(int(s)) for s in x.shape[1:])})"


def check_reference_not_training(reference: Tuple[torch.Tensor, torch.Tensor], bundle) -> None:
    """Refuse a reference that shares images with the training split (exact pixel hashes, as
    :func:`l2ul.proxy.check_not_training_data`): the losses of seen images cannot say what unseen looks like."""
    from .proxy import check_not_training_data

    shared = check_not_training_data(reference[0], bundle, allow=True)
    if shared:
        raise DataError(f"the reference shares {shared} of its {reference[0].shape[0]} images with the training "
                        "split; the unseen task needs images the model never saw (a validation split, held-out "
                        "images), never the training split")
