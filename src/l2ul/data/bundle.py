"""The shared data types: :class:`DatasetBundle`, the two ``Dataset`` classes, :func:`stack`, and the helpers
every family module uses (default folders, :func:`_array_bundle` for in-memory datasets).

Nothing here knows about specs or the registry (see :mod:`l2ul.data._registry`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..errors import DataError

PathLike = Union[str, os.PathLike]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def default_data_dir() -> Path:
    """Where torchvision datasets live unless ``data_dir`` is given: ``$L2UL_DATA_DIR`` or ``~/.cache/l2ul/data``."""
    env = os.environ.get("L2UL_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "l2ul" / "data"


def default_cache_dir() -> Path:
    """Where decoded-array caches go unless ``data_dir`` is given: ``$L2UL_CACHE_DIR`` or ``~/.cache/l2ul``."""
    env = os.environ.get("L2UL_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "l2ul"


# ----------------------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------------------


class ArrayImageDataset(Dataset):
    """In-memory images: ``(x[i] / max_value as float CHW, int label)``.

    ``x_uint8`` may be NHWC, NHW or NCHW (``layout="auto"`` picks NHWC when the last axis has 1, 3 or 4
    channels and axis 1 does not, NCHW when axis 1 has 1, 3 or 4 channels); it is stored once as a contiguous
    NCHW ``uint8`` tensor (``.images``). ``max_value`` is 255 for ordinary images and 16 for the UCI digits.
    ``transform`` (e.g. torchvision ``RandomCrop``) is applied to the float tensor.
    """

    def __init__(self, x_uint8, y, transform=None, *, max_value: float = 255.0, layout: str = "auto"):
        x = torch.as_tensor(np.asarray(x_uint8)) if not isinstance(x_uint8, torch.Tensor) else x_uint8
        if x.dtype != torch.uint8:
            raise DataError(f"images have dtype {x.dtype}; expected uint8 pixel values (convert with "
                            f"(x * 255).round().astype(np.uint8))")
        x = _to_nchw(x, layout)
        y = np.asarray(y.cpu().numpy() if isinstance(y, torch.Tensor) else y)
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"labels have shape {y.shape}; expected one label per image ({len(x)},)")
        if len(y) and not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"labels have dtype {y.dtype}; expected integers")
        self.images = x.contiguous()
        self.labels = y.astype(np.int64)
        self._labels_t = torch.from_numpy(self.labels)
        self.transform = transform
        self.max_value = float(max_value)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        img = self.images[i].float().div_(self.max_value)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[i])

    @property
    def targets(self) -> np.ndarray:
        return self.labels

    def get_batch(self, indices) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(x [k,C,H,W] float, y [k] int64)`` for ``indices`` in one indexing op (transform applied per image)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        x = self.images[idx].float().div_(self.max_value)
        if self.transform is not None:
            x = torch.stack([self.transform(img) for img in x]) if len(x) else x
        return x, self._labels_t[idx].clone()

    def with_transform(self, transform) -> "ArrayImageDataset":
        """A view sharing the same image storage with another transform."""
        new = ArrayImageDataset.__new__(ArrayImageDataset)
        new.__dict__.update(self.__dict__)
        new.transform = transform
        return new

    def __repr__(self) -> str:
        return (f"ArrayImageDataset(n={len(self)}, shape={tuple(self.images.shape[1:])}, "
                f"max_value={self.max_value:g}, transform={self.transform!r})")


class FileImageDataset(Dataset):
    """Images read from files with Pillow (RGB) and a torchvision transform that ends in ``ToTensor``."""

    def __init__(self, root: PathLike, files: Sequence[str], labels, transform):
        self.root = Path(root)
        self.files = list(files)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image

        path = self.root / self.files[i]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except OSError as e:
            raise DataError(f"cannot read image {path}: {e}; remove or replace the file") from None
        return self.transform(img), int(self.labels[i])

    @property
    def targets(self) -> np.ndarray:
        return self.labels

    def __repr__(self) -> str:
        return f"FileImageDataset(root={str(self.root)!r}, n={len(self)})"


def _to_nchw(x: torch.Tensor, layout: str) -> torch.Tensor:
    layout = layout.upper()
    if layout == "AUTO":
        if x.ndim == 3:
            layout = "NHW"
        elif x.ndim == 4:
            if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
                layout = "NHWC"
            elif x.shape[1] in (1, 3, 4):
                layout = "NCHW"
            else:
                raise DataError(f"cannot tell the channel axis of images with shape {tuple(x.shape)}; "
                                f"expected NHWC or NCHW with 1, 3 or 4 channels")
        else:
            raise DataError(f"images have shape {tuple(x.shape)}; expected NHWC, NHW or NCHW")
    expected_ndim = {"NHW": 3, "NHWC": 4, "NCHW": 4}
    if layout not in expected_ndim:
        raise DataError(f"unknown layout {layout!r}; use auto, NHWC, NHW or NCHW")
    if x.ndim != expected_ndim[layout]:
        raise DataError(f"images have shape {tuple(x.shape)}, which is not {layout}")
    if layout == "NHW":
        return x.unsqueeze(1)
    if layout == "NHWC":
        return x.permute(0, 3, 1, 2)
    return x


# ----------------------------------------------------------------------------------------------------------
# Bundle
# ----------------------------------------------------------------------------------------------------------


@dataclass(repr=False)
class DatasetBundle:
    """A loaded dataset: train/test ``Dataset`` s plus everything a request or evaluation needs without
    touching images.

    ``train_ids[i]`` is the canonical identifier of training instance ``i``: ``i`` itself for array datasets,
    the file path relative to the dataset root for image folders and UTKFace. ``extra`` holds
    dataset-specific items (``"train_eval"``: un-augmented training set; UTKFace ``"val"``, ``"val_labels"``;
    ``"train_names"`` for cifar10-jpeg; ``"skipped"`` file names).
    """

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    class_names: List[str]
    input_shape: Tuple[int, int, int]
    train_ids: List[Any]
    train_labels: np.ndarray
    test_labels: np.ndarray
    description: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.train_labels = np.asarray(self.train_labels, dtype=np.int64)
        self.test_labels = np.asarray(self.test_labels, dtype=np.int64)
        self.input_shape = tuple(int(s) for s in self.input_shape)
        self.extra.setdefault("train_eval", self.train)

    @property
    def n_train(self) -> int:
        return len(self.train_labels)

    @property
    def n_test(self) -> int:
        return len(self.test_labels)

    def _check_indices(self, indices) -> List[int]:
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < self.n_train]
        if bad:
            raise DataError(f"training indices {bad[:5]} are outside 0..{self.n_train - 1}")
        return idx

    def train_subset(self, indices) -> Subset:
        """``torch.utils.data.Subset`` of the training set (as loaded, i.e. augmented if ``augment=True``)."""
        return Subset(self.train, self._check_indices(indices))

    def stack_train(self, indices, *, augmented: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` tensors for a few training instances (e.g. the forget set), un-augmented by default."""
        ds = self.train if augmented else self.extra.get("train_eval", self.train)
        return stack(ds, self._check_indices(indices))

    def retain_indices(self, forget_ids) -> np.ndarray:
        """All training indices not in ``forget_ids``, ascending."""
        mask = np.ones(self.n_train, dtype=bool)
        mask[self._check_indices(forget_ids)] = False
        return np.flatnonzero(mask)

    def __repr__(self) -> str:
        return (f"DatasetBundle(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, "
                f"num_classes={self.num_classes}, input_shape={self.input_shape})")


def stack(dataset: Dataset, indices) -> Tuple[torch.Tensor, torch.Tensor]:
    """Gather ``dataset[i]`` for ``indices`` into ``(x [k,C,H,W] float32, y [k] int64)``.

    Uses one tensor-indexing op for an :class:`ArrayImageDataset` (also through ``Subset`` s of one);
    otherwise reads the items one by one.
    """
    idx = [int(i) for i in indices]
    base, mapped = dataset, idx
    while isinstance(base, Subset):
        mapped = [int(base.indices[i]) for i in mapped]
        base = base.dataset
    if isinstance(base, ArrayImageDataset):
        return base.get_batch(mapped)
    if not idx:
        raise DataError("no indices to stack")
    items = [dataset[i] for i in idx]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items], dtype=torch.int64)


# ----------------------------------------------------------------------------------------------------------
# In-memory bundles (digits, npz, cifar10-jpeg, torchvision)
# ----------------------------------------------------------------------------------------------------------


def _array_augment(shape: Tuple[int, int, int]):
    """The paper's CIFAR recipe for RGB arrays (random crop, padding H/8, + flip); None for grey data."""
    c, h, w = shape
    if c != 3 or h < 16:
        return None
    from torchvision import transforms as T

    return T.Compose([T.RandomCrop((h, w), padding=max(1, h // 8)), T.RandomHorizontalFlip()])


def _array_bundle(name: str, x_train, y_train, x_test, y_test, class_names, *, description: str,
                  augment: bool, max_value: float = 255.0, extra: Optional[dict] = None,
                  layout: str = "auto") -> DatasetBundle:
    """A :class:`DatasetBundle` of two :class:`ArrayImageDataset` s; ``train_ids`` are ``0..n-1``."""
    train_eval = ArrayImageDataset(x_train, y_train, max_value=max_value, layout=layout)
    test = ArrayImageDataset(x_test, y_test, max_value=max_value, layout=layout)
    shape = tuple(train_eval.images.shape[1:])
    if tuple(test.images.shape[1:]) != shape:
        raise DataError(f"{name}: train images are {shape} but test images are {tuple(test.images.shape[1:])}; "
                        f"both splits must have the same image shape")
    tf = _array_augment(shape) if augment else None
    train = train_eval.with_transform(tf) if tf is not None else train_eval
    if tf is not None:
        description += "; augmented (random crop + flip)"
    extra = dict(extra or {})
    extra["train_eval"] = train_eval
    return DatasetBundle(name=name, train=train, test=test, num_classes=len(class_names),
                         class_names=list(class_names), input_shape=shape,
                         train_ids=list(range(len(train_eval))), train_labels=train_eval.labels,
                         test_labels=test.labels, description=description, extra=extra)
