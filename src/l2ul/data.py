"""Datasets: ``load_dataset(spec) -> DatasetBundle``.

Every dataset returns ``(image, label)`` with ``image`` a ``FloatTensor[C, H, W]`` in ``[0, 1]`` and ``label``
an ``int``; normalisation lives inside the model (see ARCHITECTURE.md). A :class:`DatasetBundle` also carries
the labels as ``np.int64`` arrays, so deletion requests and evaluation never iterate images to read labels,
and a canonical identifier for each training instance (``train_ids``) that ``--forget-ids`` refers to.

Dataset specs (``describe_specs()`` prints this list for the CLI):

``digits``
    scikit-learn's bundled 8x8 UCI digits (offline, 1797 images, grey values 0..16 scaled to ``[0, 1]``,
    shape ``[1, 8, 8]``). Split: ``sklearn.model_selection.train_test_split(test_size=360, random_state=0,
    stratify=y)`` on the 1797 images, giving 1437 train / 360 test in a fixed order (the split's order).
``npz:PATH``
    A numpy ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (images ``uint8``, NHWC or NHW;
    labels integers) and an optional ``class_names``.
``cifar10-jpeg:PATH``
    The JPEG-bytes ``.npz`` format (``{train,test}_jpeg_bytes``, ``{train,test}_jpeg_offsets``,
    ``y_{train,test}``, optional ``class_names``/``train_names``), decoded with Pillow. The decoded arrays are
    cached as an ``.npz`` under ``data_dir`` (or ``$L2UL_CACHE_DIR``, default ``~/.cache/l2ul``) keyed by the
    source file's size and mtime, so only the first load decodes. Instance order is the file's order.
``cifar10``, ``cifar100``, ``fashion-mnist``
    torchvision datasets under ``data_dir`` (default ``$L2UL_DATA_DIR`` or ``~/.cache/l2ul/data``);
    downloaded only with ``download=True`` (CLI ``--download``).
``imagefolder:PATH[?resize=R&crop=C]``
    ``PATH/train/<class>/*`` and ``PATH/test/<class>/*`` read by ``torchvision.datasets.ImageFolder``. With
    ``resize``/``crop``: ``Resize(R)`` then ``CenterCrop(C)`` (the ImageNet evaluation transform). Training ids
    are file paths relative to ``PATH`` (``train/cat/0001.png``). Class indices come from the train folder;
    the test folder may lack classes but must not add new ones.
``imagenet:PATH``
    ``imagefolder`` with ``resize=256&crop=224``; test images come from ``PATH/val`` if present, else
    ``PATH/test``.
``utkface:PATH[?grouping=NAME]``
    UTKFace images ``age_gender_race_date.jpg[.chip.jpg]`` anywhere under ``PATH``; the class is the age bin
    of the grouping (see :data:`UTKFACE_GROUPINGS`; default ``balanced``). Images are resized to 128x128 and
    center-cropped to 120x120. Split: the paper's (see :func:`utkface_split`); the validation split is
    ``bundle.extra["val"]``.

``augment=True`` (for pre-training) adds random crop (padding ``H/8``, i.e. 4 for 32x32) + horizontal flip to
RGB array datasets (the paper's CIFAR recipe), ``RandomResizedCrop`` + flip to image folders, and random 120
crop + flip to UTKFace. Grey data (digits, Fashion-MNIST) is never augmented. Augmentation draws from torch's
global RNG (which a ``DataLoader`` seeds per worker from its own ``generator``). ``bundle.extra["train_eval"]``
is always the un-augmented training set (the same object as ``train`` when ``augment=False``).
"""
from __future__ import annotations

import io
import os
import re
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qsl

import numpy as np
import torch
from torch.utils.data import Dataset, Subset
from torchvision.datasets import ImageFolder

from .errors import DataError
from .safety import atomic_path

PathLike = Union[str, os.PathLike]

__all__ = [
    "DatasetBundle",
    "ArrayImageDataset",
    "FileImageDataset",
    "load_dataset",
    "stack",
    "describe_specs",
    "DATASET_SPECS",
    "UTKFACE_GROUPINGS",
    "UTKFACE_DEFAULT_GROUPING",
    "utkface_age_class",
    "utkface_split",
    "parse_utkface_name",
    "default_data_dir",
    "default_cache_dir",
]

#: (spec, one-line description) for every accepted dataset spec; :func:`describe_specs` formats it.
DATASET_SPECS: List[Tuple[str, str]] = [
    ("digits", "scikit-learn 8x8 digits, offline (1437 train / 360 test, stratified, random_state=0)"),
    ("npz:PATH", "npz with x_train, y_train, x_test, y_test (uint8 NHWC or NHW) and optional class_names"),
    ("cifar10-jpeg:PATH", "npz of JPEG bytes (train_jpeg_bytes/offsets, y_train, test_..., class_names); "
                          "decoded once, then cached"),
    ("cifar10", "torchvision CIFAR-10 under --data-dir (--download to fetch)"),
    ("cifar100", "torchvision CIFAR-100 under --data-dir (--download to fetch)"),
    ("fashion-mnist", "torchvision Fashion-MNIST under --data-dir (--download to fetch)"),
    ("imagefolder:PATH[?resize=R&crop=C]", "PATH/train/<class>/*, PATH/test/<class>/*; ids are paths "
                                           "relative to PATH"),
    ("imagenet:PATH", "imagefolder with resize=256&crop=224; test from PATH/val (else PATH/test)"),
    ("utkface:PATH[?grouping=NAME]", "UTKFace age_gender_race_date.jpg files, age-bin classes; groupings: "
                                     "balanced (default), TNN, MFD, groups, tens"),
]

#: Age-bin edges per grouping. Class ``i`` is ``[edges[i], edges[i+1])``; the last bin also holds the last
#: edge (age 120), so every age in ``0..120`` has a class.
UTKFACE_GROUPINGS: Dict[str, List[int]] = {
    "TNN": [0, 10, 15, 20, 25, 30, 40, 50, 60, 120],
    "MFD": [0, 20, 41, 120],
    "balanced": [0, 20, 30, 45, 120],
    "groups": [0, 4, 13, 20, 31, 46, 61, 120],
    "tens": [0, 11, 21, 31, 41, 51, 61, 71, 81, 91, 101, 111, 120],
}
UTKFACE_DEFAULT_GROUPING = "balanced"
#: The paper's UTKFace split sizes for the full 23,708-image release (train, validation; the rest is test).
UTKFACE_PAPER_SPLIT = (18966, 2371, 23708)
UTKFACE_SIZE = (128, 120)  # resize to 128x128, then crop 120x120
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

_CACHE_FORMAT = 1


def describe_specs() -> str:
    """The accepted dataset specs, one per line, for CLI help and error messages."""
    width = max(len(s) for s, _ in DATASET_SPECS)
    return "\n".join(f"  {s.ljust(width)}  {d}" for s, d in DATASET_SPECS)


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
# Spec parsing
# ----------------------------------------------------------------------------------------------------------


def _split_spec(spec: str) -> Tuple[str, Optional[str], Dict[str, str]]:
    """``"name:PATH?k=v&k2=v2"`` -> ``(name, PATH or None, {k: v})``; a trailing ``?...`` counts as options
    only when it holds ``key=value`` pairs (so a ``?`` elsewhere in a path is kept)."""
    spec = str(spec).strip()
    options: Dict[str, str] = {}
    head, q, query = spec.rpartition("?")
    if q and "=" in query:
        spec, options = head, dict(parse_qsl(query, keep_blank_values=True))
    name, sep, path = spec.partition(":")
    return name.strip().lower(), (path if sep else None), options


def _unknown_spec(spec: str) -> DataError:
    return DataError(f"unknown dataset spec {spec!r}; valid specs:\n{describe_specs()}")


def load_dataset(spec: str, *, data_dir: Optional[PathLike] = None, download: bool = False,
                 augment: bool = False) -> DatasetBundle:
    """Load a dataset by spec (see the module docstring or :func:`describe_specs`)."""
    name, path, options = _split_spec(spec)
    data_dir = Path(data_dir).expanduser() if data_dir is not None else None
    needs_path = {"npz", "cifar10-jpeg", "imagefolder", "imagenet", "utkface"}
    no_path = {"digits", "cifar10", "cifar100", "fashion-mnist", "fashionmnist"}
    if name in needs_path:
        if not path:
            raise DataError(f"dataset spec {spec!r} needs a path: use {name}:PATH")
        p = Path(path).expanduser()
        if name == "npz":
            _no_options(spec, options)
            return _load_npz(p, augment=augment)
        if name == "cifar10-jpeg":
            _no_options(spec, options)
            return _load_jpeg_npz(p, cache_dir=data_dir, augment=augment)
        if name == "imagefolder":
            return _load_imagefolder(p, options, augment=augment, spec_name="imagefolder")
        if name == "imagenet":
            options = {"resize": "256", "crop": "224", **options}
            return _load_imagefolder(p, options, augment=augment, spec_name="imagenet")
        return _load_utkface(p, options, augment=augment)
    if name in no_path:
        if path:
            raise DataError(f"dataset spec {spec!r} takes no path; use {name!r} and --data-dir DIR")
        _no_options(spec, options)
        if name == "digits":
            return _load_digits()
        return _load_torchvision("fashion-mnist" if name == "fashionmnist" else name,
                                 data_dir or default_data_dir(), download=download, augment=augment)
    raise _unknown_spec(spec)


def _no_options(spec: str, options: Dict[str, str]) -> None:
    if options:
        raise DataError(f"dataset spec {spec!r} takes no options (got {', '.join(sorted(options))}); "
                        f"remove the '?...' part")


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


def _class_names(raw, y_train: np.ndarray, y_test: np.ndarray, where: str) -> List[str]:
    top = int(max(y_train.max(initial=-1), y_test.max(initial=-1)))
    lowest = int(min(y_train.min(initial=0), y_test.min(initial=0)))
    if lowest < 0:
        raise DataError(f"{where}: labels must be >= 0 (found {lowest})")
    if raw is None:
        return [str(i) for i in range(top + 1)]
    names = [str(n) for n in np.asarray(raw).reshape(-1)]
    if top >= len(names):
        raise DataError(f"{where}: label {top} has no entry in class_names (only {len(names)} names); "
                        f"fix class_names or the labels")
    return names


# ----------------------------------------------------------------------------------------------------------
# digits / npz / cifar10-jpeg
# ----------------------------------------------------------------------------------------------------------


def _load_digits() -> DatasetBundle:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.rint(d.images).astype(np.uint8)  # values 0..16
    y = d.target.astype(np.int64)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=360, random_state=0, stratify=y)
    desc = (f"scikit-learn 8x8 digits: {len(idx_train)} train / {len(idx_test)} test (stratified "
            f"train_test_split, random_state=0), 10 classes, grey [1, 8, 8], values 0..16 scaled to [0, 1]")
    return _array_bundle("digits", x[idx_train], y[idx_train], x[idx_test], y[idx_test],
                         [str(i) for i in range(10)], description=desc, augment=False, max_value=16.0,
                         layout="NHW",
                         extra={"source_indices_train": idx_train, "source_indices_test": idx_test})


def _open_npz(path: Path, what: str):
    if not path.is_file():
        raise DataError(f"{what} file {path} not found; check the path")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is not a readable .npz file ({e}); check the file") from None


def _require_keys(npz, keys: Sequence[str], path: Path, fmt: str) -> None:
    missing = [k for k in keys if k not in npz.files]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)} (has {', '.join(npz.files) or 'nothing'}); "
                        f"a {fmt} file needs {', '.join(keys)}")


def _labels_array(arr, key: str, n: int, path: Path) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 1 or len(arr) != n:
        raise DataError(f"{path}: {key} has shape {arr.shape}; expected ({n},), one label per image")
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{path}: {key} has dtype {arr.dtype}; expected integer labels")
    return arr.astype(np.int64)


def _load_npz(path: Path, *, augment: bool) -> DatasetBundle:
    keys = ("x_train", "y_train", "x_test", "y_test")
    with _open_npz(path, "npz") as d:
        _require_keys(d, keys, path, "npz dataset")
        arrays = {k: d[k] for k in keys}
        raw_names = d["class_names"] if "class_names" in d.files else None
    for k in ("x_train", "x_test"):
        x = arrays[k]
        if x.dtype != np.uint8:
            raise DataError(f"{path}: {k} has dtype {x.dtype}; expected uint8 images (0..255)")
        if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3, 4)):
            raise DataError(f"{path}: {k} has shape {x.shape}; expected NHWC (N, H, W, C) or NHW (N, H, W)")
    y_train = _labels_array(arrays["y_train"], "y_train", len(arrays["x_train"]), path)
    y_test = _labels_array(arrays["y_test"], "y_test", len(arrays["x_test"]), path)
    names = _class_names(raw_names, y_train, y_test, str(path))
    layout = "NHW" if arrays["x_train"].ndim == 3 else "NHWC"
    if arrays["x_test"].ndim != arrays["x_train"].ndim:
        raise DataError(f"{path}: x_train is {arrays['x_train'].shape} but x_test is {arrays['x_test'].shape}; "
                        f"both must be NHWC or both NHW")
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    desc = (f"npz {path.name}: {len(y_train)} train / {len(y_test)} test, {len(names)} classes, "
            f"images {x_train.shape[1:]} ({layout})")
    return _array_bundle(f"npz:{path}", x_train, y_train, x_test, y_test, names, description=desc,
                         augment=augment, layout=layout)


def _jpeg_cache_path(path: Path, cache_dir: Optional[Path]) -> Optional[Path]:
    st = path.stat()
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    base = cache_dir if cache_dir is not None else default_cache_dir()
    return base / "decoded" / f"{path.stem}-{key}-{st.st_size}-{st.st_mtime_ns}.npz"


def _decode_jpegs(d, split: str, path: Path) -> np.ndarray:
    from PIL import Image

    data, offsets = d[f"{split}_jpeg_bytes"], np.asarray(d[f"{split}_jpeg_offsets"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise DataError(f"{path}: {split}_jpeg_bytes must be a 1-D uint8 array (got {data.dtype} {data.shape})")
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(data) \
            or np.any(np.diff(offsets) <= 0):
        raise DataError(f"{path}: {split}_jpeg_offsets must start at 0, increase strictly and end at "
                        f"len({split}_jpeg_bytes)={len(data)}; the file is corrupt")
    n = len(offsets) - 1
    out: Optional[np.ndarray] = None
    for i in range(n):
        try:
            with Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]].tobytes())) as im:
                arr = np.asarray(im.convert("RGB"))
        except OSError as e:
            raise DataError(f"{path}: {split} image {i} is not a decodable JPEG ({e}); the file is corrupt") \
                from None
        if out is None:
            out = np.empty((n,) + arr.shape, dtype=np.uint8)
        elif arr.shape != out.shape[1:]:
            raise DataError(f"{path}: {split} image {i} is {arr.shape[1]}x{arr.shape[0]} but image 0 is "
                            f"{out.shape[2]}x{out.shape[1]}; all images must have the same size")
        out[i] = arr
    if out is None:
        raise DataError(f"{path}: the {split} split has no images")
    return out


def _read_jpeg_cache(cache: Path, n_train: int, n_test: int):
    try:
        with np.load(cache, allow_pickle=False) as c:
            if int(c["format"]) != _CACHE_FORMAT:
                return None
            x_train, x_test = c["x_train"], c["x_test"]
    except Exception:  # a corrupt or foreign cache file is ignored and rebuilt
        return None
    if len(x_train) != n_train or len(x_test) != n_test or x_train.dtype != np.uint8 or x_test.dtype != np.uint8:
        return None
    return x_train, x_test


def _load_jpeg_npz(path: Path, *, cache_dir: Optional[Path], augment: bool) -> DatasetBundle:
    keys = ("train_jpeg_bytes", "train_jpeg_offsets", "y_train", "test_jpeg_bytes", "test_jpeg_offsets", "y_test")
    with _open_npz(path, "cifar10-jpeg") as d:
        _require_keys(d, keys, path, "JPEG-bytes npz")
        n_train = len(d["train_jpeg_offsets"]) - 1
        n_test = len(d["test_jpeg_offsets"]) - 1
        y_train = _labels_array(d["y_train"], "y_train", n_train, path)
        y_test = _labels_array(d["y_test"], "y_test", n_test, path)
        names = _class_names(d["class_names"] if "class_names" in d.files else None, y_train, y_test, str(path))
        train_names = [str(s) for s in d["train_names"]] if "train_names" in d.files else None
        cache = _jpeg_cache_path(path, cache_dir)
        cached = _read_jpeg_cache(cache, n_train, n_test) if cache is not None and cache.is_file() else None
        from_cache = cached is not None
        if cached is None:
            x_train, x_test = _decode_jpegs(d, "train", path), _decode_jpegs(d, "test", path)
            try:
                with atomic_path(cache) as tmp:
                    np.savez(tmp, x_train=x_train, x_test=x_test, format=np.array(_CACHE_FORMAT))
                _prune_stale_caches(cache)
            except OSError:
                pass  # cache dir not writable: decode again next time
        else:
            x_train, x_test = cached
    desc = (f"{path.name} (JPEG-bytes npz, decoded{' from cache' if from_cache else ''}): {n_train} train / "
            f"{n_test} test, {len(names)} classes, images {x_train.shape[1:3]}")
    extra = {"cache_path": cache, "from_cache": from_cache}
    if train_names is not None:
        extra["train_names"] = train_names
    return _array_bundle(f"cifar10-jpeg:{path}", x_train, y_train, x_test, y_test, names, description=desc,
                         augment=augment, extra=extra)


def _prune_stale_caches(cache: Path) -> None:
    """Remove older caches of the same source file (same name and path hash, other size/mtime)."""
    prefix = cache.name.rsplit("-", 2)[0] + "-"
    for old in cache.parent.iterdir():
        if old != cache and old.name.endswith(".npz") and old.name.rsplit("-", 2)[0] + "-" == prefix:
            try:
                old.unlink()
            except OSError:
                pass


# ----------------------------------------------------------------------------------------------------------
# torchvision datasets
# ----------------------------------------------------------------------------------------------------------


def _load_torchvision(name: str, root: Path, *, download: bool, augment: bool) -> DatasetBundle:
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100,
           "fashion-mnist": datasets.FashionMNIST}[name]
    splits = {}
    for train in (True, False):
        try:
            splits[train] = cls(str(root), train=train, download=download)
        except RuntimeError as e:
            hint = ("the files may be corrupt; delete them and pass --download" if download else
                    "pass --download (needs internet) or --data-dir DIR")
            raise DataError(f"{name} not found under {root} ({e}); {hint}") from None
        except OSError as e:  # network errors during download
            raise DataError(f"could not download {name} into {root} ({e}); check the network, or place the "
                            f"files there and pass --data-dir DIR") from None
    tr, te = splits[True], splits[False]
    x_train = np.asarray(tr.data.numpy() if isinstance(tr.data, torch.Tensor) else tr.data)
    x_test = np.asarray(te.data.numpy() if isinstance(te.data, torch.Tensor) else te.data)
    y_train = np.asarray(tr.targets, dtype=np.int64)
    y_test = np.asarray(te.targets, dtype=np.int64)
    desc = (f"torchvision {name} from {root}: {len(y_train)} train / {len(y_test)} test, "
            f"{len(tr.classes)} classes")
    return _array_bundle(name, x_train, y_train, x_test, y_test, list(tr.classes), description=desc,
                         augment=augment)


# ----------------------------------------------------------------------------------------------------------
# image folders / ImageNet
# ----------------------------------------------------------------------------------------------------------


def _int_option(options: Dict[str, str], key: str, spec_name: str) -> Optional[int]:
    if key not in options:
        return None
    try:
        v = int(options[key])
    except ValueError:
        v = 0
    if v < 1:
        raise DataError(f"{spec_name}: {key}={options[key]!r} must be a positive integer")
    return v


class _FixedClassImageFolder(ImageFolder):
    """``ImageFolder`` whose class indices are given (the train folder's), so a test folder that lacks a class
    keeps the same label numbering."""

    def __init__(self, root, class_to_idx: Dict[str, int], **kwargs):
        self._fixed_class_to_idx = dict(class_to_idx)
        super().__init__(root, allow_empty=True, **kwargs)

    def find_classes(self, directory):
        return list(self._fixed_class_to_idx), dict(self._fixed_class_to_idx)


def _load_imagefolder(root: Path, options: Dict[str, str], *, augment: bool, spec_name: str) -> DatasetBundle:
    from torchvision import transforms as T

    unknown = set(options) - {"resize", "crop"}
    if unknown:
        raise DataError(f"{spec_name}: unknown option(s) {', '.join(sorted(unknown))}; valid: resize, crop")
    resize = _int_option(options, "resize", spec_name)
    crop = _int_option(options, "crop", spec_name)
    if not root.is_dir():
        raise DataError(f"{spec_name} folder {root} not found; check the path")
    train_dir = root / "train"
    test_names = ("val", "test") if spec_name == "imagenet" else ("test",)
    test_dir = next((root / t for t in test_names if (root / t).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise DataError(f"{spec_name}: expected {root}/train/<class>/* and "
                        f"{' or '.join(f'{root}/{t}/<class>/*' for t in test_names)}; "
                        f"{'train' if not train_dir.is_dir() else '/'.join(test_names)} folder is missing")

    eval_tf: List[Any] = []
    if resize:
        eval_tf.append(T.Resize(resize))
    if crop:
        eval_tf.append(T.CenterCrop(crop))
    eval_tf = T.Compose(eval_tf + [T.ToTensor()])

    try:
        train_eval = ImageFolder(str(train_dir), transform=eval_tf)
    except (FileNotFoundError, RuntimeError) as e:
        raise DataError(f"{spec_name}: cannot read {train_dir} ({e}); it needs one sub-folder per class "
                        f"holding images") from None
    class_to_idx = dict(train_eval.class_to_idx)
    test_classes = sorted(e.name for e in os.scandir(test_dir) if e.is_dir())
    extra_classes = [c for c in test_classes if c not in class_to_idx]
    if extra_classes:
        raise DataError(f"{spec_name}: {test_dir} has classes not in {train_dir}: "
                        f"{', '.join(extra_classes[:5])}; every test class needs training images")

    try:
        test = _FixedClassImageFolder(str(test_dir), class_to_idx, transform=eval_tf)
    except (FileNotFoundError, RuntimeError) as e:
        raise DataError(f"{spec_name}: cannot read {test_dir} ({e})") from None
    if len(test) == 0:
        raise DataError(f"{spec_name}: {test_dir} holds no images")

    train = train_eval
    if augment:
        size = crop or resize
        aug = [T.RandomResizedCrop(size)] if size else []
        train = ImageFolder(str(train_dir), transform=T.Compose(aug + [T.RandomHorizontalFlip(), T.ToTensor()]))
    shape = tuple(train_eval[0][0].shape)
    ids = [Path(p).relative_to(root).as_posix() for p, _ in train_eval.samples]
    desc = (f"{spec_name} {root}: {len(train_eval)} train / {len(test)} test ({test_dir.name}/), "
            f"{len(class_to_idx)} classes, images {shape}"
            + (f", resize {resize}" if resize else "") + (f", center crop {crop}" if crop else "")
            + ("; augmented" if augment else ""))
    return DatasetBundle(name=f"{spec_name}:{root}", train=train, test=test, num_classes=len(class_to_idx),
                         class_names=list(class_to_idx), input_shape=shape, train_ids=ids,
                         train_labels=np.asarray(train_eval.targets), test_labels=np.asarray(test.targets),
                         description=desc, extra={"train_eval": train_eval, "test_dir": str(test_dir)})


# ----------------------------------------------------------------------------------------------------------
# UTKFace
# ----------------------------------------------------------------------------------------------------------

_UTK_RE = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d+)\.(?:jpe?g|png)", re.IGNORECASE)


def parse_utkface_name(filename: str) -> Optional[Tuple[int, int, int]]:
    """``(age, gender, race)`` from a UTKFace file name ``age_gender_race_date.jpg[...]``, or None when the
    name does not follow that pattern or the age is outside 0..120."""
    m = _UTK_RE.match(os.path.basename(filename))
    if not m:
        return None
    age = int(m.group(1))
    if age > 120:
        return None
    return age, int(m.group(2)), int(m.group(3))


def _grouping(name: str) -> Tuple[str, List[int]]:
    for key, edges in UTKFACE_GROUPINGS.items():
        if key.lower() == name.lower():
            return key, edges
    raise DataError(f"unknown UTKFace grouping {name!r}; valid: {', '.join(UTKFACE_GROUPINGS)}")


def utkface_age_class(age, grouping: str = UTKFACE_DEFAULT_GROUPING):
    """Class index of ``age`` (int or array) under ``grouping``: bin ``i`` is ``[edges[i], edges[i+1])``,
    except that the last edge (120) belongs to the last bin."""
    _, edges = _grouping(grouping)
    a = np.asarray(age)
    if np.any(a < edges[0]) or np.any(a > edges[-1]):
        raise DataError(f"age outside {edges[0]}..{edges[-1]} cannot be binned")
    cls = np.minimum(np.searchsorted(edges, a, side="right") - 1, len(edges) - 2)
    return int(cls) if cls.ndim == 0 else cls.astype(np.int64)


def _utk_class_names(edges: List[int]) -> List[str]:
    names = [f"{lo}-{hi - 1}" for lo, hi in zip(edges[:-2], edges[1:-1])]
    return names + [f"{edges[-2]}-{edges[-1]}"]


def utkface_split(n: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paper's UTKFace split of ``n`` sorted files: ``perm = RandomState(0).permutation(n)`` (identical to
    ``np.random.seed(0); np.random.permutation(n)`` without touching numpy's global state), then the first
    ``round(n * 18966 / 23708)`` are train, the next ``round(n * 2371 / 23708)`` validation, the rest test.
    For the full release (n = 23708) that is exactly 18,966 / 2,371 / 2,371; smaller folders are split in the
    same proportions (50 files: 40 / 5 / 5), keeping at least one test file."""
    if n < 2:
        raise DataError(f"UTKFace needs at least 2 valid images to form train and test splits (found {n})")
    tr, va, total = UTKFACE_PAPER_SPLIT
    n_train = min(int(round(n * tr / total)), n - 1)
    n_val = min(int(round(n * va / total)), n - 1 - n_train)
    perm = np.random.RandomState(0).permutation(n)
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]


def _load_utkface(root: Path, options: Dict[str, str], *, augment: bool) -> DatasetBundle:
    from torchvision import transforms as T

    unknown = set(options) - {"grouping"}
    if unknown:
        raise DataError(f"utkface: unknown option(s) {', '.join(sorted(unknown))}; valid: grouping")
    grouping, edges = _grouping(options.get("grouping", UTKFACE_DEFAULT_GROUPING))
    if not root.is_dir():
        raise DataError(f"UTKFace folder {root} not found; check the path")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.is_file() and p.name.lower().endswith(IMAGE_EXTENSIONS))
    valid, ages, skipped = [], [], []
    for f in files:
        parsed = parse_utkface_name(f)
        if parsed is None:
            skipped.append(f)
        else:
            valid.append(f)
            ages.append(parsed[0])
    if not valid:
        raise DataError(f"no UTKFace images under {root} ({len(files)} image files, {len(skipped)} with names "
                        f"not of the form age_gender_race_date.jpg); check the path")
    labels = utkface_age_class(np.asarray(ages, dtype=np.int64), grouping)
    idx_train, idx_val, idx_test = utkface_split(len(valid))
    resize, crop = UTKFACE_SIZE
    eval_tf = T.Compose([T.Resize((resize, resize)), T.CenterCrop(crop), T.ToTensor()])

    def part(idx, tf):
        return FileImageDataset(root, [valid[i] for i in idx], labels[idx], tf)

    train_eval, val, test = part(idx_train, eval_tf), part(idx_val, eval_tf), part(idx_test, eval_tf)
    train = train_eval
    if augment:
        train = part(idx_train, T.Compose([T.Resize((resize, resize)), T.RandomCrop(crop),
                                           T.RandomHorizontalFlip(), T.ToTensor()]))
    names = _utk_class_names(edges)
    desc = (f"UTKFace {root}: {len(idx_train)} train / {len(idx_val)} val / {len(idx_test)} test of "
            f"{len(valid)} images, grouping {grouping} ({len(names)} age classes: {', '.join(names)}); "
            f"skipped {len(skipped)} files with unparseable names (not age_gender_race_date.jpg with age "
            f"0..120); 128x128 resize, 120x120 crop"
            + ("; augmented" if augment else ""))
    return DatasetBundle(name=f"utkface:{root}", train=train, test=test, num_classes=len(names),
                         class_names=names, input_shape=(3, crop, crop), train_ids=list(train_eval.files),
                         train_labels=train_eval.labels, test_labels=test.labels, description=desc,
                         extra={"train_eval": train_eval, "val": val, "val_labels": val.labels,
                                "val_ids": list(val.files), "test_ids": list(test.files),
                                "skipped": skipped, "grouping": grouping, "edges": list(edges)})
