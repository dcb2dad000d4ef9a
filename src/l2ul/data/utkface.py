"""UTKFace: ``utkface:PATH[?grouping=NAME]``, age-bin classification.

UTKFace images ``age_gender_race_date.jpg[.chip.jpg]`` anywhere under ``PATH``; the class is the age bin of
the grouping (see :data:`UTKFACE_GROUPINGS`; default ``balanced``). Images are resized to 128x128 and
center-cropped to 120x120 (``augment=True``: random 120 crop + flip). Split: the paper's (see
:func:`utkface_split`); the validation split is ``bundle.extra["val"]``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import DataError
from ._registry import LoadArgs, register_dataset
from .bundle import IMAGE_EXTENSIONS, DatasetBundle, FileImageDataset

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


def _scan(root: Path) -> Tuple[List[str], List[int], List[str]]:
    """``(valid files, their ages, skipped files)`` under ``root``, sorted by relative path."""
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
    return valid, ages, skipped


@register_dataset("utkface", takes_path=True, options=("grouping",), usage="utkface:PATH[?grouping=NAME]",
                  help="UTKFace age_gender_race_date.jpg files, age-bin classes; groupings: "
                       "balanced (default), TNN, MFD, groups, tens")
def _load_utkface(args: LoadArgs) -> DatasetBundle:
    from torchvision import transforms as T

    root, augment = args.path, args.augment
    grouping, edges = _grouping(args.options.get("grouping", UTKFACE_DEFAULT_GROUPING))
    valid, ages, skipped = _scan(root)
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
