"""Model files: l2ul's own format and foreign checkpoints.

l2ul model files are single safetensors files: the :class:`~l2ul.models.NormalizedClassifier` state dict
plus metadata ``{"format": "l2ul-model", "version": "1", "meta": <JSON of model.l2ul_meta>}``. Reading one
never unpickles anything; the architecture is rebuilt by name from the registry.

Foreign checkpoints (a plain ``state_dict``, optionally inside ``{"state_dict": ...}`` or
``{"model": ...}``, from ``torch.save`` or safetensors) are read with ``torch.load(weights_only=True)``,
which refuses pickled code, and loaded strictly into a freshly built architecture.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open

from ..errors import L2ULError, ModelFileError
from ..safety import PathLike, atomic_path, check_output_path, sha256_file
from ._checkpoint import _existing_file, _few, _first_line, _sniff, check_finite_model
from ._factory import create_model
from ._file_meta import MetaError, validate_meta
from .classifier import NormalizedClassifier

__all__ = ["save_model", "load_model", "import_state_dict", "model_sha256", "check_finite_model", "FORMAT",
           "FORMAT_VERSION"]

FORMAT = "l2ul-model"
FORMAT_VERSION = 1
IMPORT_HINT = "import foreign weights with --arch NAME --weights PATH (l2ul.models.import_state_dict)"

#: sha256 hex digest of a model file (recorded in reports to identify the model a run started from)
model_sha256 = sha256_file


def save_model(model: NormalizedClassifier, path: PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` to ``path`` as an l2ul model file (atomic; refuses to overwrite unless ``overwrite``).

    Refuses a model whose ``l2ul_meta`` :func:`load_model` would refuse (so every file it writes loads)."""
    if not isinstance(model, NormalizedClassifier) or not model.l2ul_meta.get("arch"):
        raise L2ULError("save_model needs a model built by l2ul (create_model / load_model / import_state_dict); "
                        "register a custom architecture with l2ul.models.register_model and build it by name")
    try:
        validate_meta(json.loads(json.dumps(model.l2ul_meta)))
    except (MetaError, TypeError, ValueError) as e:
        raise L2ULError(f"cannot save this model: load_model would refuse its l2ul_meta ({e}); build it with "
                        "create_model and architecture options only") from None
    path = check_output_path(path, overwrite=overwrite)
    metadata = {"format": FORMAT, "version": str(FORMAT_VERSION), "meta": json.dumps(model.l2ul_meta)}
    with atomic_path(path) as tmp:
        safetensors.torch.save_model(model, str(tmp), metadata=metadata, force_contiguous=True)
        _canonical_header(tmp)
    return path


def _canonical_header(path: Path) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys.

    safetensors writes its metadata map in an order that changes from process to process, so the same model
    saved twice would give files with different bytes and sha256 (which reports record to identify a
    model). The tensor data is untouched; the header keeps safetensors' 8-byte alignment.
    """
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        text += b" " * (-len(text) % 8)
        if len(text) == n:
            f.seek(8)
            f.write(text)
            return
        data = f.read()
        f.seek(0)
        f.write(len(text).to_bytes(8, "little") + text + data)
        f.truncate()


def load_model(path: PathLike, *, device: str = "cpu") -> NormalizedClassifier:
    """Read an l2ul model file written by :func:`save_model`; returns the model in eval mode on ``device``.

    The model is built from the file's own contents only: its metadata must name a known architecture and
    carry only that architecture's file options, each of its type (:mod:`l2ul.models._file_meta`; loading
    options such as ``pretrained``, ``weights`` or ``name_or_path`` are refused, so nothing is downloaded
    and no other file is opened); its tensors must fit the architecture exactly (compared on the meta
    device before anything is allocated) and pass :func:`check_finite_model`.

    Raises :class:`~l2ul.errors.ModelFileError` for a missing, truncated or corrupt file, a file that is not
    an l2ul model (e.g. a PyTorch pickle), metadata it must not carry, or tensors that do not fit or are
    not finite.
    """
    path = _existing_file(path)
    kind = _sniff(path)
    if kind == "pickle":
        raise ModelFileError(f"{path} is not an l2ul model file: this looks like a PyTorch pickle; {IMPORT_HINT}")
    metadata, shapes = _read_header(path)
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path} is a safetensors file but not an l2ul model (no l2ul metadata); {IMPORT_HINT}")
    meta = _parse_meta(path, metadata)
    try:
        _, meta = validate_meta(meta)
    except MetaError as e:
        raise ModelFileError(f"{path} has unusable l2ul metadata: {e}; re-create the file with l2ul") from None
    groups = _expected_tensors(path, meta)
    if groups is not None:
        _compare_tensors(path, meta, groups, shapes)
    model = _build(path, meta)
    if groups is None:
        _compare_tensors(path, meta, _tensor_groups(model), shapes)
    try:
        missing, unexpected = safetensors.torch.load_model(model, str(path), strict=False)
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ModelFileError(f"{path}: stored tensors do not load ({_first_line(e)}); the file is damaged, "
                             "restore it from a backup or re-create it") from None
    if missing or unexpected:
        raise ModelFileError(f"{path}: stored tensors do not match its architecture {meta['arch']} "
                             f"(missing {_few(sorted(missing))}; unexpected {_few(sorted(unexpected))}); "
                             "re-create the file")
    check_finite_model(model, source=path)
    for key in ("mean", "std"):
        stored = getattr(model, key).flatten().tolist()
        if any(abs(a - b) > 1e-6 * max(1.0, abs(b)) for a, b in zip(stored, meta[key])):
            raise ModelFileError(f"{path}: its {key} tensor {_floats(stored)} differs from the {key} in its "
                                 f"metadata {_floats(meta[key])}; the file was altered, re-create it")
    return model.to(device).eval()


def import_state_dict(arch: str, path: PathLike, *, num_classes: Optional[int] = None,
                      class_names: Optional[Sequence[str]] = None, mean: Optional[Sequence[float]] = None,
                      std: Optional[Sequence[float]] = None, **arch_kwargs: Any) -> NormalizedClassifier:
    """Build architecture ``arch`` and load a foreign checkpoint into it strictly; returns it in eval mode.

    ``path``: ``.safetensors`` or a ``torch.save`` file read with ``weights_only=True`` (pickled code is
    refused). The state dict may be wrapped in ``{"state_dict": ...}`` / ``{"model": ...}``, carry a
    ``module.`` (DataParallel) prefix, and have keys with or without the ``net.`` prefix of
    :class:`~l2ul.models.NormalizedClassifier`. ``num_classes=None`` infers it from the final layer.
    Mismatching keys or shapes raise :class:`~l2ul.errors.ModelFileError` naming them.
    """
    return create_model(arch, num_classes, weights=path, class_names=class_names, mean=mean, std=std,
                        **arch_kwargs).eval()


# --------------------------------------------------------------------------------------------- helpers

def _parse_meta(path: Path, metadata: Mapping[str, str]) -> Dict[str, Any]:
    try:
        version = int(metadata.get("version", ""))
    except ValueError:
        raise ModelFileError(f"{path} has a damaged l2ul format version {metadata.get('version')!r}; "
                             "re-create the file") from None
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path} was written by a newer l2ul (format version {version}, this l2ul reads "
                             f"up to {FORMAT_VERSION}); upgrade l2ul")
    try:
        meta = json.loads(metadata["meta"])
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        for key in ("arch", "num_classes", "mean", "std"):
            if key not in meta:
                raise ValueError(f"no {key!r}")
    except (KeyError, ValueError) as e:
        raise ModelFileError(f"{path} has damaged l2ul metadata ({e}); re-create the file") from None
    return meta


def _read_header(path: Path) -> Tuple[Dict[str, str], Dict[str, Tuple[int, ...]]]:
    """The safetensors metadata and the stored tensors' shapes (from the header; no tensor data is read)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path} is truncated or corrupt (not a readable safetensors file: {_first_line(e)}); "
                             "restore it from a backup or re-create it") from None


def _build(path: Path, meta: Dict[str, Any]) -> NormalizedClassifier:
    """The architecture the (validated) metadata describes, from its own options only."""
    try:
        return _create(meta)
    except Exception as e:  # noqa: BLE001 - the builder refused the file's options (TypeError, ValueError, ...)
        raise _rebuild_error(path, meta, e) from None


def _create(meta: Dict[str, Any]) -> NormalizedClassifier:
    return create_model(meta["arch"], meta["num_classes"], pretrained=False, weights=None,
                        class_names=meta["class_names"], mean=meta["mean"], std=meta["std"], **meta["arch_kwargs"])


def _rebuild_error(path: Path, meta: Dict[str, Any], e: Exception) -> ModelFileError:
    if isinstance(e, L2ULError):
        return ModelFileError(f"{path}: cannot rebuild its architecture: {e}")
    return ModelFileError(f"{path}: cannot rebuild its architecture {meta['arch']} from the options in its "
                          f"metadata ({type(e).__name__}: {_first_line(e)}); re-create the file")


def _expected_tensors(path: Path, meta: Dict[str, Any]) -> Optional[List[Tuple[List[str], Tuple[int, ...]]]]:
    """The state-dict entries of the architecture, as (keys sharing one tensor, shape), from a build on the
    meta device (nothing allocated, so an oversized architecture costs nothing); None if the architecture
    cannot be built there."""
    try:
        with torch.device("meta"):
            model = _create(meta)
    except NotImplementedError:  # the builder needs real tensors (e.g. torchvision's RegNet init)
        return None
    except Exception as e:  # noqa: BLE001 - as in _build
        raise _rebuild_error(path, meta, e) from None
    return _tensor_groups(model)


def _tensor_groups(model: NormalizedClassifier) -> List[Tuple[List[str], Tuple[int, ...]]]:
    """(state-dict keys of one tensor (tied weights share one), its shape) for each tensor of ``model``."""
    groups: Dict[int, Tuple[List[str], Tuple[int, ...]]] = {}
    for key, t in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(t), ([], tuple(t.shape)))[0].append(key)
    return list(groups.values())


def _compare_tensors(path: Path, meta: Dict[str, Any], groups: List[Tuple[List[str], Tuple[int, ...]]],
                     shapes: Dict[str, Tuple[int, ...]]) -> None:
    known = {k for keys, _ in groups for k in keys}
    unexpected = sorted(k for k in shapes if k not in known)
    missing = [keys[0] for keys, _ in groups if not any(k in shapes for k in keys)]
    mismatched = [f"{k} {list(shapes[k])} vs {list(shape)}" for keys, shape in groups for k in keys
                  if k in shapes and shapes[k] != shape]
    if missing or unexpected or mismatched:
        problems = [f"{label} {_few(keys)}" for label, keys in
                    (("missing", missing), ("unexpected", unexpected),
                     ("shape mismatches (file vs architecture)", mismatched)) if keys]
        raise ModelFileError(f"{path}: stored tensors do not match its architecture {meta['arch']} with "
                             f"{meta['num_classes']} classes ({'; '.join(problems)}); they belong to another "
                             "architecture or the file was altered: re-create the file")


def _floats(values: Sequence[float]) -> List[float]:
    return [round(float(v), 6) for v in values[:8]]
