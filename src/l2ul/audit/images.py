"""Thumbnails of the forgotten instances: small PNGs (no imaging library needed) for the report and the page."""
from __future__ import annotations

import base64
import math
import struct
import zlib
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import DataError

#: thumbnails are upscaled (nearest neighbour) until their shorter side is at least this many pixels ...
MIN_SIDE = 64
#: ... and downscaled (area average) until their longer side is at most this many
MAX_SIDE = 128
#: at most this many thumbnails go into a report by default (a few KiB each)
MAX_THUMBNAILS = 256

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a ``uint8`` image, ``[H, W]`` (grey), ``[H, W, 1]``, ``[H, W, 3]`` (RGB) or ``[H, W, 4]``."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise DataError(f"a PNG needs uint8 pixels, got {a.dtype}; scale [0, 1] images by 255 first")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise DataError(f"a PNG needs an [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] image, got shape {a.shape}")
    h, w, c = a.shape
    color_type = {1: 0, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))  # filter type 0 (none) on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _as_hwc_uint8(image: Any) -> np.ndarray:
    """One image as ``uint8 [H, W, C]``: a float ``[C, H, W]`` tensor/array in [0, 1], or an HWC uint8 array."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a[:, :, None] if a.ndim == 2 else a
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise DataError(f"a thumbnail needs a [C, H, W] image, got shape {a.shape}")
    a = np.nan_to_num(a.astype(np.float64), nan=0.0)
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def resize_for_thumbnail(a: np.ndarray, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE) -> np.ndarray:
    """Nearest-neighbour upscale by an integer factor to a shorter side of at least ``min_side``; an image whose
    longer side exceeds ``max_side`` is instead shrunk by an integer factor (area average) to fit."""
    h, w = a.shape[:2]
    if max(h, w) > max_side:
        f = math.ceil(max(h, w) / max_side)
        hh, ww = (h // f) * f, (w // f) * f
        if hh == 0 or ww == 0:
            return a
        b = a[:hh, :ww].astype(np.float64).reshape(hh // f, f, ww // f, f, a.shape[2]).mean(axis=(1, 3))
        return np.clip(np.rint(b), 0, 255).astype(np.uint8)
    f = max(1, math.ceil(min_side / max(1, min(h, w))))
    f = min(f, max(1, max_side // max(h, w)))  # never past max_side
    return np.repeat(np.repeat(a, f, axis=0), f, axis=1) if f > 1 else a


def thumbnail_png(image: Any) -> bytes:
    """One image (float ``[C, H, W]`` in [0, 1], or uint8 ``[H, W, C]``) as a small PNG (see
    :func:`resize_for_thumbnail`). Channels other than 1, 3 or 4 are reduced to their mean (grey)."""
    a = _as_hwc_uint8(image)
    if a.shape[2] not in (1, 3, 4):
        a = np.rint(a.mean(axis=2, keepdims=True)).astype(np.uint8)
    return encode_png(resize_for_thumbnail(a))


def thumbnails_png(images: Any, ids: Sequence[Any], *, limit: Optional[int] = None) -> Dict[Any, bytes]:
    """``{id: PNG bytes}`` for a batch ``images`` (float ``[k, C, H, W]`` in [0, 1], a tensor or array) and
    its ``k`` ``ids`` (e.g. a request's per-instance ids); only the first ``limit`` when given."""
    n = len(images)
    if len(ids) != n:
        raise DataError(f"got {len(ids)} ids for {n} images; give one id per image")
    if limit is not None:
        n = min(n, max(0, int(limit)))
    return {ids[i]: thumbnail_png(images[i]) for i in range(n)}


def report_thumbnails(images: Any, ids: Sequence[Any], *, limit: Optional[int] = MAX_THUMBNAILS) -> Dict[str, str]:
    """The ``report["thumbnails"]`` field: ``{str(id): base64 PNG}`` (JSON keys are strings) for the first
    ``limit`` instances (default :data:`MAX_THUMBNAILS`; ``None`` = all)."""
    return {str(k): base64.b64encode(v).decode("ascii") for k, v in thumbnails_png(images, ids, limit=limit).items()}


def png_data_uri(thumb: Union[bytes, str, np.ndarray, Any]) -> Optional[str]:
    """A ``data:image/png;base64,...`` URI for a thumbnail given as PNG bytes, a base64 PNG string, a uint8
    HWC array or a float CHW image; ``None`` if it is not a valid PNG (never a reference to a file or URL)."""
    if isinstance(thumb, str):
        try:
            data = base64.b64decode(thumb.strip(), validate=True)
        except (ValueError, TypeError):
            return None
    elif isinstance(thumb, (bytes, bytearray, memoryview)):
        data = bytes(thumb)
    else:
        try:
            data = thumbnail_png(thumb)
        except (DataError, ValueError, TypeError):
            return None
    if not data.startswith(PNG_SIGNATURE):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def lookup_thumbnail(thumbnails: Optional[Mapping[Any, Any]], key: Any) -> Optional[Any]:
    """The thumbnail of ``key`` in ``thumbnails``, by the id itself or its string (JSON keys are strings)."""
    if not thumbnails:
        return None
    if _hashable(key) and key in thumbnails:
        return thumbnails[key]
    return thumbnails.get(str(key))


def _hashable(x: Any) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True
