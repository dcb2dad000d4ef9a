"""Unlearned-model repair data: sources of *unlabeled* proxy images.

After forgetting, a repair phase distils the original model's outputs back into the unlearned model on
images that are neither the forget set nor the training data (see issue #11 and
``benchmarks/results/repair_probe.md``). This module loads such images; labels are never read, because
the repair only needs the original model's predictions on them.

Specs accepted by :func:`load_proxy`:

``npz:PATH``
    an ``.npz`` file with the images under key ``x``: ``uint8`` NHWC / NHW (0..255) or float NCHW in
    ``[0, 1]`` (float NHW is read as one channel). Other keys (labels, names) are ignored.
``imagefolder:PATH``
    image files (``.png``, ``.jpg``, ...) anywhere under ``PATH``, at any depth, read in sorted path order.
    Hidden files and folders (``.name``) and anything that is not a regular file (FIFOs, sockets, devices)
    are skipped without being opened; symbolic links to regular files are followed, links to folders are
    not.

With ``image_shape=(C, H, W)`` (the model's input shape) the images are converted to ``C`` channels
(grey to RGB by repetition, RGB to grey by ITU-R 601 luma, RGBA loses its alpha); an image folder's images
are resized (bilinear) to ``H x W``, while an npz of another size is refused. Without it, an image
folder's images must all have one size.

:func:`check_not_training_data` refuses a proxy that overlaps the training split: repairing on training
images turns the method into the ``oracle`` (fine-tuning on remaining data), which an instance-wise
unlearning method must not see.
"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .errors import DataError

PathLike = Union[str, os.PathLike]

__all__ = ["PROXY_SPECS", "load_proxy", "describe_proxy", "check_not_training_data", "image_hashes",
           "list_image_files"]

#: (spec, description) for every accepted proxy spec.
PROXY_SPECS: List[Tuple[str, str]] = [
    ("npz:PATH", "npz with unlabeled images under key x: uint8 NHWC/NHW or float NCHW in [0, 1]"),
    ("imagefolder:PATH", "image files anywhere under PATH (any depth), sorted by path"),
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _specs_text() -> str:
    return "; ".join(f"{s} ({d})" for s, d in PROXY_SPECS)


def _parse(spec: Any) -> Tuple[str, Path]:
    if not isinstance(spec, (str, os.PathLike)):
        raise DataError(f"a proxy spec must be a string such as npz:PATH, got {type(spec).__name__}")
    text = str(spec).strip()
    kind, sep, path = text.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in ("npz", "imagefolder"):
        raise DataError(f"unknown proxy spec {text!r}; valid specs: {_specs_text()}")
    if not path.strip():
        raise DataError(f"proxy spec {text!r} needs a path: use {kind}:PATH")
    return kind, Path(path.strip()).expanduser()


def _check_image_shape(image_shape) -> Optional[Tuple[int, int, int]]:
    if image_shape is None:
        return None
    try:
        shape = tuple(int(s) for s in image_shape)
    except (TypeError, ValueError):
        raise DataError(f"image_shape must be (C, H, W), got {image_shape!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise DataError(f"image_shape must be three positive integers (C, H, W), got {image_shape!r}")
    return shape  # type: ignore[return-value]


def _subset(n: int, max_images: Optional[int], seed: int) -> np.ndarray:
    """Indices to keep: all (in order) or a seeded random subset of ``max_images``, ascending."""
    if max_images is None or max_images >= n:
        return np.arange(n)
    if not isinstance(max_images, (int, np.integer)) or max_images < 1:
        raise DataError(f"max_images must be a positive integer, got {max_images!r}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, int(max_images), replace=False))


def _convert_channels(x: np.ndarray, channels: int, where: str) -> np.ndarray:
    """``x`` float32 NCHW -> ``channels`` channels (1 <-> 3 converted, RGBA's alpha dropped)."""
    c = x.shape[1]
    if c == 4 and channels != 4:
        x, c = x[:, :3], 3
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return np.repeat(x, 3, axis=1)
    if c == 3 and channels == 1:
        return np.tensordot(x, _LUMA, axes=([1], [0]))[:, None].astype(np.float32)
    raise DataError(f"{where}: images have {c} channels and the model takes {channels}; only grey (1), RGB (3) "
                    f"and RGBA (4) images can be converted")


# ----------------------------------------------------------------------------------------------------------
# npz


def _load_npz(path: Path, image_shape, max_images, seed) -> torch.Tensor:
    where = f"proxy npz {path}"
    if not path.exists():
        raise DataError(f"{where} not found; check the path")
    if not path.is_file():
        raise DataError(f"{where} is not a regular file; give the path of an .npz file")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as e:  # not a zip/npy (numpy then refuses to unpickle it), truncated, unreadable
        raise DataError(f"{where} is not a readable .npz file ({type(e).__name__}: {e}); the file is damaged or "
                        f"not an npz") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{where} holds a single .npy array, not an npz; save it with np.savez(path, x=images)")
    with npz as d:
        if "x" not in d.files:
            raise DataError(f"{where} has no key 'x' (it has {', '.join(d.files) or 'nothing'}); store the proxy "
                            f"images under x, e.g. np.savez(path, x=images)")
        try:
            x = d["x"]
        except ValueError as e:
            if "pickle" in str(e).lower():
                raise DataError(f"{where}: x is an object (pickled) array, which l2ul never unpickles; store the "
                                f"images as a numeric array (uint8 NHWC or float NCHW)") from None
            raise DataError(f"{where}: x cannot be read ({e}); the file is damaged") from None
        except Exception as e:  # BadZipFile, zlib.error, EOFError, OSError: a damaged member
            raise DataError(f"{where}: x cannot be read ({type(e).__name__}: {e}); the file is damaged") from None
    if x.dtype == object or x.dtype.kind in "OUSV":
        raise DataError(f"{where}: x has dtype {x.dtype}; expected uint8 (0..255) or float images in [0, 1]")
    if x.dtype == np.uint8:
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and x.shape[-1] in (1, 3, 4):
            x = np.transpose(x, (0, 3, 1, 2))
        else:
            raise DataError(f"{where}: uint8 x has shape {x.shape}; expected NHWC (N, H, W, C) with C in 1, 3, "
                            f"4, or NHW (N, H, W)")
        scale = 255.0
    elif x.dtype.kind == "f":
        if x.ndim == 3:
            x = x[:, None]
        elif not (x.ndim == 4 and x.shape[1] in (1, 3, 4)):
            raise DataError(f"{where}: float x has shape {x.shape}; expected NCHW (N, C, H, W) with C in 1, 3, "
                            f"4, or NHW (N, H, W)")
        scale = 1.0
    else:
        raise DataError(f"{where}: x has dtype {x.dtype}; expected uint8 (0..255) or float images in [0, 1] "
                        f"(convert integer images with x.astype(np.uint8) if they are 0..255)")
    if x.shape[0] == 0:
        raise DataError(f"{where} holds no images (x has shape {x.shape})")
    if min(x.shape[2:]) < 1:
        raise DataError(f"{where}: x has shape {x.shape}; images must be at least 1x1")
    keep = _subset(x.shape[0], max_images, seed)
    x = x[keep].astype(np.float32) / np.float32(scale)
    if scale == 1.0:
        if not np.isfinite(x).all():
            raise DataError(f"{where}: x holds NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(f"{where}: float x lies in [{lo:.3g}, {hi:.3g}]; expected [0, 1] (unnormalised pixels; "
                            f"divide 0..255 values by 255)")
    if image_shape is not None:
        c, h, w = image_shape
        if tuple(x.shape[2:]) != (h, w):
            raise DataError(f"{where}: images are {x.shape[2]}x{x.shape[3]} (HxW) but the model takes {h}x{w}; "
                            f"resize them or use imagefolder:, which resizes")
        x = _convert_channels(x, c, where)
    return torch.from_numpy(np.ascontiguousarray(x))


# ----------------------------------------------------------------------------------------------------------
# image folder


def list_image_files(root: PathLike) -> Tuple[List[Path], int]:
    """``(files, skipped)``: regular image files under ``root`` at any depth, sorted by relative path, and the
    number of image-named entries skipped because they are not regular files (FIFOs, sockets, devices,
    broken links). Nothing is opened; hidden entries are ignored; links to folders are not followed."""
    root = Path(root)
    files: List[Path] = []
    skipped = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            p = Path(dirpath) / name
            try:
                mode = os.stat(p).st_mode      # follows links; stat never opens the file (FIFOs do not block)
            except OSError:
                skipped += 1
                continue
            if stat.S_ISREG(mode):
                files.append(p)
            else:
                skipped += 1
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    return files, skipped


_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "La"}


def _read_image(path: Path, size: Optional[Tuple[int, int]]) -> np.ndarray:
    """``path`` as uint8 HWC (grey: 1 channel, else RGB), resized (bilinear) to ``size=(H, W)`` if given."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            grey = im.mode in _GREY_MODES
            if im.mode.startswith("I;16"):
                arr16 = np.asarray(im, dtype=np.float32) / 257.0
                im2 = Image.fromarray(np.clip(np.rint(arr16), 0, 255).astype(np.uint8), mode="L")
            else:
                im2 = im.convert("L" if grey else "RGB")
            if size is not None and (im2.height, im2.width) != size:
                im2 = im2.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(im2, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"proxy image {path} cannot be decoded ({e}); remove or replace it") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def _load_imagefolder(root: Path, image_shape, max_images, seed) -> torch.Tensor:
    where = f"proxy folder {root}"
    if not root.exists():
        raise DataError(f"{where} not found; check the path")
    if not root.is_dir():
        raise DataError(f"{where} is not a folder; use npz:PATH for an .npz file")
    files, skipped = list_image_files(root)
    if not files:
        extra = f" ({skipped} image-named entries are not regular files)" if skipped else ""
        raise DataError(f"{where} holds no image files ({', '.join(IMAGE_EXTENSIONS)}){extra}; check the path")
    files = [files[i] for i in _subset(len(files), max_images, seed)]
    size = tuple(image_shape[1:]) if image_shape is not None else None
    arrays = [_read_image(p, size) for p in files]  # type: ignore[arg-type]
    if size is None:
        first = arrays[0].shape[:2]
        for p, a in zip(files, arrays):
            if a.shape[:2] != first:
                raise DataError(f"{where}: images have different sizes ({first[1]}x{first[0]} in {files[0].name}, "
                                f"{a.shape[1]}x{a.shape[0]} in {p.name}); pass image_shape (the model's input "
                                f"shape) to resize them")
    channels = 3 if any(a.shape[2] == 3 for a in arrays) else 1
    if channels == 3:
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    x = np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    if image_shape is not None:
        x = _convert_channels(x, image_shape[0], where)
    return torch.from_numpy(np.ascontiguousarray(x))


# ----------------------------------------------------------------------------------------------------------


def load_proxy(spec: str, *, image_shape: Optional[Sequence[int]] = None, max_images: Optional[int] = None,
               seed: int = 0) -> torch.Tensor:
    """Unlabeled proxy images from ``spec`` (``npz:PATH`` or ``imagefolder:PATH``) as float32
    ``[N, C, H, W]`` in ``[0, 1]``.

    image_shape: the model's ``(C, H, W)``; converts channels (and, for image folders, resizes), and refuses
        an npz of another height/width.
    max_images: keep a seeded random subset of this many images (``seed``), in their original order; for an
        image folder only the chosen files are decoded.

    Raises :class:`~l2ul.errors.DataError` with a one-line message for every bad input.
    """
    kind, path = _parse(spec)
    shape = _check_image_shape(image_shape)
    if kind == "npz":
        return _load_npz(path, shape, max_images, seed)
    return _load_imagefolder(path, shape, max_images, seed)


def describe_proxy(spec: str, images: torch.Tensor) -> str:
    """One line for reports: ``"npz:/x/y.npz (5000 images, 3x32x32)"``."""
    kind, path = _parse(spec)
    n = int(images.shape[0])
    shape = "x".join(str(int(s)) for s in images.shape[1:])
    return f"{kind}:{path} ({n} image{'s' if n != 1 else ''}, {shape})"


# ----------------------------------------------------------------------------------------------------------
# training-overlap check


def _quantise(x: Union[torch.Tensor, np.ndarray], max_value: float = 1.0) -> np.ndarray:
    """Images as uint8 NCHW (``round(x / max_value * 255)``); uint8 input with ``max_value=255`` unchanged."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.dtype == np.uint8 and max_value == 255.0:
        return a
    a = a.astype(np.float32) * np.float32(255.0 / max_value)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def image_hashes(images: Union[torch.Tensor, np.ndarray], *, max_value: Optional[float] = None,
                 chunk: int = 4096) -> List[bytes]:
    """A 16-byte BLAKE2b digest per image of its uint8-quantised pixels (shape included).

    ``images``: float ``[N, C, H, W]`` in ``[0, 1]`` or uint8 ``[N, C, H, W]`` (0..255). ``max_value``
    overrides the pixel scale (e.g. 16 for uint8 digits stored as 0..16). 50,000 CIFAR images take well
    under a second."""
    if isinstance(images, torch.Tensor):
        is_uint8 = images.dtype == torch.uint8
    else:
        is_uint8 = np.asarray(images).dtype == np.uint8
    scale = float(max_value) if max_value is not None else (255.0 if is_uint8 else 1.0)
    out: List[bytes] = []
    n = int(images.shape[0])
    for s in range(0, n, chunk):
        q = np.ascontiguousarray(_quantise(images[s:s + chunk], scale))
        head = repr(q.shape[1:]).encode()
        for row in q:
            out.append(hashlib.blake2b(head + row.tobytes(), digest_size=16).digest())
    return out


def _training_arrays(train: Any) -> Iterable[Tuple[Union[torch.Tensor, np.ndarray], Optional[float]]]:
    """Chunks ``(images, max_value)`` of the training images behind ``train`` (a DatasetBundle, a Dataset, a
    Subset, a tensor or an array), un-augmented where possible."""
    from torch.utils.data import Dataset, Subset

    try:
        from .data import ArrayImageDataset, DatasetBundle, stack
    except Exception:  # pragma: no cover - data.py is always importable in a release
        ArrayImageDataset = DatasetBundle = None  # type: ignore[assignment]
        stack = None  # type: ignore[assignment]
    if DatasetBundle is not None and isinstance(train, DatasetBundle):
        train = train.extra.get("train_eval", train.train)
    if isinstance(train, (torch.Tensor, np.ndarray)):
        yield train, None
        return
    base, idx = train, None
    while isinstance(base, Subset):
        sub = np.asarray(base.indices, dtype=np.int64)
        idx = sub if idx is None else sub[idx]
        base = base.dataset
    if ArrayImageDataset is not None and isinstance(base, ArrayImageDataset):
        imgs = base.images if idx is None else base.images[torch.as_tensor(idx)]
        yield imgs, float(base.max_value)
        return
    if isinstance(train, Dataset):
        n = len(train)
        for s in range(0, n, 1024):
            if stack is not None:
                x, _ = stack(train, range(s, min(n, s + 1024)))
            else:  # pragma: no cover
                x = torch.stack([train[i][0] for i in range(s, min(n, s + 1024))])
            yield x, None
        return
    raise DataError(f"check_not_training_data needs the training images as a DatasetBundle, a Dataset or an "
                    f"image tensor, got {type(train).__name__}")


def check_not_training_data(proxy: torch.Tensor, train: Any, *, allow: bool = False,
                            forget: Optional[torch.Tensor] = None) -> int:
    """Refuse a proxy that shares images with the training split; return the number it shares.

    ``proxy``: float ``[N, C, H, W]`` in ``[0, 1]``. ``train``: the training split (a
    :class:`~l2ul.data.DatasetBundle`, whose un-augmented training set is used, a ``Dataset`` or ``Subset``,
    or an image tensor / array, e.g. a sample of it). Images are compared by exact hashes of their
    uint8-quantised pixels, so re-encoded or resized copies are not detected; the check costs about a second
    for 50,000 CIFAR images.

    Overlap with the training split raises :class:`~l2ul.errors.DataError` unless ``allow=True``: repairing
    on training images is fine-tuning on remaining data, the ``oracle`` reference, not an instance-wise
    method. Overlap with ``forget`` (the forget instances) is refused even with ``allow=True``, because
    distilling the original model on them would teach them back.
    """
    if not isinstance(proxy, torch.Tensor) or proxy.dim() != 4:
        raise DataError("the proxy must be an image tensor [N, C, H, W]")
    proxy_h = image_hashes(proxy)
    where = {h: i for i, h in reversed(list(enumerate(proxy_h)))}
    if forget is not None:
        hits = [(i, where[h]) for i, h in enumerate(image_hashes(forget)) if h in where]
        if hits:
            raise DataError(f"the proxy contains {len(hits)} of the {int(forget.shape[0])} forget instances "
                            f"(e.g. forget position {hits[0][0]} = proxy image {hits[0][1]}); repairing on them "
                            f"would teach them back; remove them from the proxy")
    shared = set()
    example: Optional[Tuple[int, int]] = None
    offset = 0
    for chunk, max_value in _training_arrays(train):
        for j, h in enumerate(image_hashes(chunk, max_value=max_value)):
            if h in where:
                shared.add(h)
                if example is None:
                    example = (where[h], offset + j)
        offset += int(chunk.shape[0])
    if shared and not allow:
        assert example is not None
        raise DataError(f"the proxy shares {len(shared)} of its {len(proxy_h)} images with the training split "
                        f"(e.g. proxy image {example[0]} = training image {example[1]}); repairing on training "
                        f"data makes the method the oracle (fine-tuning on remaining data), not instance-wise "
                        f"unlearning; use held-out or unrelated images, or pass allow=True "
                        f"(--allow-train-proxy) to run it anyway as an oracle-style reference")
    return sum(1 for h in proxy_h if h in shared)
