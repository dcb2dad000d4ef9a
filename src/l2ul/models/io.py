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
from typing import Any, Dict, Mapping, Optional, Sequence

import safetensors.torch
from safetensors import SafetensorError, safe_open

from ..errors import L2ULError, ModelFileError
from ..safety import PathLike, atomic_path, check_output_path, sha256_file
from ._checkpoint import _existing_file, _few, _first_line, _sniff
from ._factory import create_model
from .classifier import NormalizedClassifier

__all__ = ["save_model", "load_model", "import_state_dict", "model_sha256", "FORMAT", "FORMAT_VERSION"]

FORMAT = "l2ul-model"
FORMAT_VERSION = 1
IMPORT_HINT = "import foreign weights with --arch NAME --weights PATH (l2ul.models.import_state_dict)"

#: sha256 hex digest of a model file (recorded in reports to identify the model a run started from)
model_sha256 = sha256_file


def save_model(model: NormalizedClassifier, path: PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` to ``path`` as an l2ul model file (atomic; refuses to overwrite unless ``overwrite``)."""
    if not isinstance(model, NormalizedClassifier) or not model.l2ul_meta.get("arch"):
        raise L2ULError("save_model needs a model built by l2ul (create_model / load_model / import_state_dict); "
                        "register a custom architecture with l2ul.models.register_model and build it by name")
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

    Raises :class:`~l2ul.errors.ModelFileError` for a missing, truncated or corrupt file, a file that is not
    an l2ul model (e.g. a PyTorch pickle) or metadata that does not describe a known architecture.
    """
    path = _existing_file(path)
    kind = _sniff(path)
    if kind == "pickle":
        raise ModelFileError(f"{path} is not an l2ul model file: this looks like a PyTorch pickle; {IMPORT_HINT}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path} is truncated or corrupt (not a readable safetensors file: {_first_line(e)}); "
                             "restore it from a backup or re-create it") from None
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path} is a safetensors file but not an l2ul model (no l2ul metadata); {IMPORT_HINT}")
    meta = _parse_meta(path, metadata)
    try:
        model = create_model(meta["arch"], meta["num_classes"], class_names=meta.get("class_names"),
                             mean=meta["mean"], std=meta["std"], **meta.get("arch_kwargs", {}))
    except L2ULError as e:
        raise ModelFileError(f"{path}: cannot rebuild its architecture: {e}") from None
    try:
        missing, unexpected = safetensors.torch.load_model(model, str(path), strict=False)
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ModelFileError(f"{path}: stored tensors do not load ({_first_line(e)}); the file is damaged, "
                             "restore it from a backup or re-create it") from None
    if missing or unexpected:
        raise ModelFileError(f"{path}: stored tensors do not match its architecture {meta['arch']} "
                             f"(missing {_few(missing)}; unexpected {_few(unexpected)}); re-create the file")
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
