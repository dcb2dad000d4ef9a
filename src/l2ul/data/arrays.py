"""In-memory array datasets: ``digits``, ``npz:PATH`` and ``cifar10-jpeg:PATH`` (with its decode cache).

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
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from ..errors import DataError
from ..safety import atomic_path
from ._registry import LoadArgs, register_dataset
from .bundle import DatasetBundle, _array_bundle, default_cache_dir

_CACHE_FORMAT = 1


# ----------------------------------------------------------------------------------------------------------
# shared npz helpers
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# digits
# ----------------------------------------------------------------------------------------------------------


@register_dataset("digits", help="scikit-learn 8x8 digits, offline (1437 train / 360 test, stratified, "
                                 "random_state=0)")
def _load_digits(args: LoadArgs) -> DatasetBundle:
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


# ----------------------------------------------------------------------------------------------------------
# npz
# ----------------------------------------------------------------------------------------------------------


@register_dataset("npz", takes_path=True,
                  help="npz with x_train, y_train, x_test, y_test (uint8 NHWC or NHW) and optional class_names")
def _load_npz(args: LoadArgs) -> DatasetBundle:
    path = args.path
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
                         augment=args.augment, layout=layout)


# ----------------------------------------------------------------------------------------------------------
# cifar10-jpeg (JPEG bytes in an npz, decoded once and cached)
# ----------------------------------------------------------------------------------------------------------


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


def _write_jpeg_cache(cache: Path, x_train: np.ndarray, x_test: np.ndarray) -> None:
    try:
        with atomic_path(cache) as tmp:
            np.savez(tmp, x_train=x_train, x_test=x_test, format=np.array(_CACHE_FORMAT))
        _prune_stale_caches(cache)
    except OSError:
        pass  # cache dir not writable: decode again next time


def _prune_stale_caches(cache: Path) -> None:
    """Remove older caches of the same source file (same name and path hash, other size/mtime)."""
    prefix = cache.name.rsplit("-", 2)[0] + "-"
    for old in cache.parent.iterdir():
        if old != cache and old.name.endswith(".npz") and old.name.rsplit("-", 2)[0] + "-" == prefix:
            try:
                old.unlink()
            except OSError:
                pass


@register_dataset("cifar10-jpeg", takes_path=True,
                  help="npz of JPEG bytes (train_jpeg_bytes/offsets, y_train, test_..., class_names); "
                       "decoded once, then cached")
def _load_jpeg_npz(args: LoadArgs) -> DatasetBundle:
    path, cache_dir = args.path, args.data_dir
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
            _write_jpeg_cache(cache, x_train, x_test)
        else:
            x_train, x_test = cached
    desc = (f"{path.name} (JPEG-bytes npz, decoded{' from cache' if from_cache else ''}): {n_train} train / "
            f"{n_test} test, {len(names)} classes, images {x_train.shape[1:3]}")
    extra = {"cache_path": cache, "from_cache": from_cache}
    if train_names is not None:
        extra["train_names"] = train_names
    return _array_bundle(f"cifar10-jpeg:{path}", x_train, y_train, x_test, y_test, names, description=desc,
                         augment=args.augment, extra=extra)
