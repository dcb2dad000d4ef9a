"""The inputs of a command, checked before any work: :func:`run_inputs` (every file and folder a command
reads, which no output may replace or sit inside), :func:`check_inputs` (paths no reader could use, damaged
files), :func:`check_device_available` and :func:`input_hashes` (the audit record's sha256 of each model file)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

from .errors import ModelFileError


def input_hashes(paths: Sequence[Union[str, Path]]) -> Dict[str, str]:
    """sha256 of each input file (which must exist, and not be an incomplete output:
    :func:`l2ul.publish.check_published`), for the audit record."""
    from .publish import check_published
    from .safety import sha256_file

    for p in paths:
        if not Path(p).exists():
            raise ModelFileError(f"model file {p} does not exist; check the path")
        if not Path(p).is_file():
            raise ModelFileError(f"{p} is not a file; give the path of a model file")
        check_published(p)
    return {str(p): sha256_file(p) for p in paths}


def _spec_path(spec: Optional[str], *, proxy: bool = False) -> Optional[Path]:
    """The file or folder a dataset spec (``npz:PATH``, ``cifar10-jpeg:PATH``, ``imagefolder:PATH?...``) or a
    proxy spec names, or ``None`` (a spec without a path, such as ``digits``, or one that does not parse: it is
    refused with its own message when it is loaded)."""
    if spec is None or not isinstance(spec, (str, os.PathLike)):
        return None
    if proxy:
        kind, sep, path = str(spec).strip().partition(":")
        return Path(path.strip()).expanduser() if sep and path.strip() else None
    from .data._registry import _lookup, _split_spec

    name, path, _ = _split_spec(str(spec))
    entry = _lookup(name)
    return Path(path).expanduser() if entry is not None and entry.takes_path and path else None


def _at_file(value) -> Optional[Path]:
    """The file of an ``@FILE`` request value (``--forget-ids``, ``--relabel-to``), else ``None``."""
    from .requests import FILE_PREFIX

    if isinstance(value, str) and value.strip().startswith(FILE_PREFIX) and value.strip()[1:].strip():
        return Path(value.strip()[1:].strip()).expanduser()
    return None


def run_inputs(*, model=None, weights=None, original=None, dataset: Optional[str] = None,
               forget_ids: Optional[str] = None, relabel_to: Optional[str] = None,
               proxy: Optional[str] = None, reference: Optional[str] = None,
               keep_forgotten: Optional[str] = None) -> List[str]:
    """Every file and folder a command reads, for :func:`l2ul.safety.check_output_path` (which never writes
    over one of them, nor inside one of the folders): the model file(s) (``model``, ``weights``, ``original``;
    an ``nn.Module`` is skipped), the dataset's file or folder (specs with a path), the ``@FILE`` of
    ``forget_ids``, ``keep_forgotten`` and ``relabel_to``, and the proxy and reference data's files or folders."""
    paths = [p for p in (model, weights, original) if isinstance(p, (str, os.PathLike))]
    paths += [p for p in (_spec_path(dataset), _at_file(forget_ids), _at_file(keep_forgotten), _at_file(relabel_to),
                          _spec_path(proxy, proxy=True), _spec_path(reference, proxy=True)) if p is not None]
    return [str(p) for p in dict.fromkeys(paths)]


def _resized(resize: int) -> Callable[[tuple], tuple]:
    """``(width, height)`` after ``torchvision.transforms.Resize(resize)`` (the shorter side to ``resize``)."""
    def size(wh):
        w, h = wh
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = resize, int(resize * long / short)
        return (new_short, new_long) if w <= h else (new_long, new_short)
    return size


def check_inputs(*, model=None, weights=None, original=None, dataset: Optional[str] = None,
                 forget_ids: Optional[str] = None, relabel_to: Optional[str] = None,
                 proxy: Optional[str] = None, reference: Optional[str] = None,
                 keep_forgotten: Optional[str] = None) -> None:
    """Refuse, before any work and with a one-line :class:`~l2ul.errors.L2ULError`, an input no reader could
    use: every path of :func:`run_inputs` that is a symbolic link loop, a FIFO, a device or a socket
    (:func:`l2ul.safety.check_input_path`); a dataset or proxy ``.npz`` that is truncated, fails a CRC check,
    holds a member that is not a ``.npy`` array or one of Python objects (:func:`l2ul.safety.check_npz`); an
    image folder (dataset or proxy) holding such an entry, a link loop or an unreadable image, and, for a
    dataset folder without ``?crop=``, images that would come out in more than one size
    (:func:`l2ul.safety.check_image_folder`). Missing files are left to the loaders' own messages."""
    from .safety import check_image_folder, check_input_path, check_npz

    what = {}
    for p, w in ((model, "model file"), (weights, "weights file"), (original, "model file"),
                 (_at_file(forget_ids), "--forget-ids file"), (_at_file(keep_forgotten), "--keep-forgotten file"),
                 (_at_file(relabel_to), "--relabel-to file")):
        if isinstance(p, (str, os.PathLike)):
            what[str(p)] = w
    data_path = _spec_path(dataset)
    if data_path is not None:
        what.setdefault(str(data_path), "dataset")
    for p, w in what.items():
        check_input_path(p, w)
    if data_path is not None:
        from .data._registry import _lookup, _split_spec

        name, _, options = _split_spec(str(dataset))
        entry = _lookup(name)
        name = entry.name if entry is not None else name
        if name in ("npz", "cifar10-jpeg"):
            check_npz(data_path, f"{name} dataset")
        elif name in ("imagefolder", "imagenet", "utkface"):
            crop = options.get("crop") or ("224" if name == "imagenet" else None)
            resize = options.get("resize") or ("256" if name == "imagenet" else None)
            same = ("train", "test", "val") if name != "utkface" and not crop else ()
            size = _resized(int(resize)) if same and resize and resize.isdigit() and int(resize) > 0 else None
            check_image_folder(data_path, f"{name} dataset", same_size=same, output_size=size)
    for spec, what in ((proxy, "proxy"), (reference, "reference")):   # the same spec forms (l2ul.proxy)
        path = _spec_path(spec, proxy=True)
        if path is None:
            continue
        check_input_path(path, f"{what} data")
        kind = str(spec).strip().partition(":")[0].strip().lower()
        if kind == "npz":
            check_npz(path, f"{what} npz")
        elif kind == "imagefolder":
            check_image_folder(path, f"{what} image folder")


def check_device_available(device) -> None:
    """Refuse (:class:`~l2ul.errors.ConfigError`) a device that is not a device name
    (:func:`l2ul.config.check_device`), or one this machine does not have (CUDA or MPS missing, a CUDA index
    beyond the GPUs present), before any work; ``None`` (automatic) always passes."""
    from .config import check_device
    from .engine import resolve_device
    from .errors import ConfigError

    check_device(device)
    if device is None:
        return
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is not None:
        import torch

        n = torch.cuda.device_count()
        if dev.index >= n:
            raise ConfigError(f"device {str(device)!r} requested but this machine has {n} CUDA device(s) "
                              f"(cuda:0..cuda:{n - 1}); choose one of them", field="device")


