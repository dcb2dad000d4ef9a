"""Image folders: ``imagefolder:PATH[?resize=R&crop=C]`` and ``imagenet:PATH``.

``imagefolder:PATH[?resize=R&crop=C]``
    ``PATH/train/<class>/*`` and ``PATH/test/<class>/*`` read by ``torchvision.datasets.ImageFolder``. With
    ``resize``/``crop``: ``Resize(R)`` then ``CenterCrop(C)`` (the ImageNet evaluation transform). Training ids
    are file paths relative to ``PATH`` (``train/cat/0001.png``). Class indices come from the train folder;
    the test folder may lack classes but must not add new ones. ``augment=True`` trains on
    ``RandomResizedCrop`` + flip.
``imagenet:PATH``
    ``imagefolder`` with ``resize=256&crop=224``; test images come from ``PATH/val`` if present, else
    ``PATH/test``.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from torchvision.datasets import ImageFolder

from ..errors import DataError
from ._registry import LoadArgs, register_dataset
from .bundle import DatasetBundle


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


def _split_dirs(root: Path, spec_name: str, test_names: Sequence[str]) -> Tuple[Path, Path]:
    """``(root/train, first existing root/<test_names>)``, or a DataError naming what is missing."""
    if not root.is_dir():
        raise DataError(f"{spec_name} folder {root} not found; check the path")
    train_dir = root / "train"
    test_dir = next((root / t for t in test_names if (root / t).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise DataError(f"{spec_name}: expected {root}/train/<class>/* and "
                        f"{' or '.join(f'{root}/{t}/<class>/*' for t in test_names)}; "
                        f"{'train' if not train_dir.is_dir() else '/'.join(test_names)} folder is missing")
    return train_dir, test_dir


def _read_folders(train_dir: Path, test_dir: Path, eval_tf, spec_name: str):
    """``(train ImageFolder, test ImageFolder with the train folder's class indices)``, both with ``eval_tf``."""
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
    return train_eval, test


def _folder_bundle(args: LoadArgs, test_names: Sequence[str]) -> DatasetBundle:
    from torchvision import transforms as T

    root, spec_name, augment = args.path, args.name, args.augment
    resize = _int_option(args.options, "resize", spec_name)
    crop = _int_option(args.options, "crop", spec_name)
    train_dir, test_dir = _split_dirs(root, spec_name, test_names)
    eval_tf: List[Any] = []
    if resize:
        eval_tf.append(T.Resize(resize))
    if crop:
        eval_tf.append(T.CenterCrop(crop))
    eval_tf = T.Compose(eval_tf + [T.ToTensor()])
    train_eval, test = _read_folders(train_dir, test_dir, eval_tf, spec_name)
    class_to_idx = dict(train_eval.class_to_idx)

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


@register_dataset("imagefolder", takes_path=True, options=("resize", "crop"),
                  usage="imagefolder:PATH[?resize=R&crop=C]",
                  help="PATH/train/<class>/*, PATH/test/<class>/*; ids are paths relative to PATH")
def _load_imagefolder(args: LoadArgs) -> DatasetBundle:
    return _folder_bundle(args, ("test",))


@register_dataset("imagenet", takes_path=True, options=("resize", "crop"),
                  help="imagefolder with resize=256&crop=224; test from PATH/val (else PATH/test)")
def _load_imagenet(args: LoadArgs) -> DatasetBundle:
    options = {"resize": "256", "crop": "224", **args.options}
    return _folder_bundle(dataclasses.replace(args, options=options), ("val", "test"))
