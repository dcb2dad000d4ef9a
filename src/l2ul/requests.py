"""Deletion requests: which training instances to forget and, for relabelling, what to relabel them to.

A request names training instances by their 0-based index in the dataset's canonical training order
(``DatasetBundle.train_ids``), or, for image-folder datasets, by file path relative to the dataset root.
Every bad input raises :class:`l2ul.errors.RequestError` with a one-line message naming the problem and the
fix; nothing is silently dropped, reordered or de-duplicated. The order of ids is kept, and relabel targets
are aligned with it.

Accepted formats
----------------
``--forget-ids``: a comma list (``3,17,42`` or ``train/cat/0001.png,train/dog/0002.png``), or ``@FILE``: the
text file ``FILE`` with one id per line. A value is read as a file only when it starts with ``@``: a value
that is not ``@FILE`` is an id list, whatever files exist in the working folder (``--forget-ids 3`` is
instance 3 even next to a file named ``3``), and one that is not a valid id list is an error naming both
forms. In files, blank lines and ``#`` comments (whole lines, or after whitespace) are ignored, and a line may
also hold a comma list.

``--relabel-to``: ``random`` (for each instance a class drawn uniformly from the other ``num_classes - 1``,
seeded), a comma list of targets, or ``@FILE`` (one target per line, aligned with the ids). A target is a
class index or, when the class names are known, a class name.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .config import TASKS
from .errors import RequestError

__all__ = [
    "DeletionRequest",
    "parse_forget_ids",
    "random_forget_ids",
    "parse_relabel_targets",
    "build_request",
    "TASKS",
]

_INT_RE = re.compile(r"^[+-]?\d+$")
_COMMENT_RE = re.compile(r"(^|\s)#.*$")


@dataclass
class DeletionRequest:
    """A validated deletion request.

    ``ids``: training indices to forget, in request order. ``targets``: for ``task="relabel"`` the new label
    of each id (same order), else None. ``task``: ``"misclassify"`` (forget: the model should no longer
    predict the instance's label) or ``"relabel"`` (the model should predict ``targets``). ``source``: where
    the ids came from, for reports (e.g. ``"--forget-ids ids.txt"``, ``"--forget-random 8 --seed 0"``).
    """

    ids: List[int]
    targets: Optional[List[int]] = None
    task: str = "misclassify"
    source: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.ids = [int(i) for i in self.ids]
        if not self.ids:
            raise RequestError("a deletion request needs at least one training id; give --forget-ids or "
                               "--forget-random K")
        if self.task not in TASKS:
            raise RequestError(f"unknown task {self.task!r}; use one of {', '.join(TASKS)}")
        if self.task == "relabel":
            if self.targets is None:
                raise RequestError("task 'relabel' needs targets; give --relabel-to random or a targets file")
            self.targets = [int(t) for t in self.targets]
            if len(self.targets) != len(self.ids):
                raise RequestError(f"{len(self.targets)} relabel targets for {len(self.ids)} forget ids; give "
                                   f"one target per id")
        elif self.targets is not None:
            raise RequestError("relabel targets were given but the task is 'misclassify'; drop --relabel-to or "
                               "use task 'relabel'")

    @property
    def k(self) -> int:
        return len(self.ids)

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"task": self.task, "k": self.k, "ids": list(self.ids),
                             "targets": None if self.targets is None else list(self.targets),
                             "source": self.source}
        if self.extra:
            d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "DeletionRequest":
        return cls(ids=list(d["ids"]), targets=d.get("targets"), task=d.get("task", "misclassify"),
                   source=d.get("source", ""), extra=dict(d.get("extra") or {}))


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------


#: A ``--forget-ids`` / ``--relabel-to`` value starting with this names a file (``@ids.txt``).
FILE_PREFIX = "@"


def _is_file(value: str) -> bool:
    try:
        return Path(value).expanduser().is_file()
    except (OSError, ValueError):
        return False


def _file_hint(value: str, what: str) -> str:
    """`` (to read the file V, write --what @V)`` when ``value`` names an existing file, else ``""``."""
    return f" (to read the file {value!r}, write {what} @{value})" if _is_file(value) else ""


def _read_list_file(name: str, what: str) -> str:
    """The text of the ``@FILE`` of ``what``, or a one-line :class:`RequestError` (never blocks on a FIFO)."""
    if not name:
        raise RequestError(f"{what} @ needs a file name after '@', e.g. {what} @ids.txt")
    path = Path(name).expanduser()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise RequestError(f"{what} file {name!r} (from @{name}) does not exist; give an existing file after @, "
                           f"or a comma list like 3,17,42") from None
    except OSError as e:
        raise RequestError(f"cannot read {what} file {name!r} ({e.strerror or e}); check the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise RequestError(f"{what} @{name} is a directory; give a text file after @")
    if not stat.S_ISREG(st.st_mode):
        raise RequestError(f"{what} @{name} is not a regular file (a FIFO, socket or device); give a text file "
                           f"after @")
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise RequestError(f"cannot read {what} file {path} ({e}); give a UTF-8 text file") from None


def _tokens(value: str, what: str) -> Tuple[List[Tuple[str, str]], str]:
    """Split ``value`` (a comma list, or ``@FILE``) into ``(token, where)`` pairs; ``where`` locates a token
    for error messages. Returns the pairs and a description of the source (``"list"`` for a comma list)."""
    if value.startswith(FILE_PREFIX):
        name = value[len(FILE_PREFIX):].strip()
        text = _read_list_file(name, what)
        out = []
        for n, line in enumerate(text.splitlines(), start=1):
            line = _COMMENT_RE.sub("", line).strip()
            for tok in line.split(","):
                tok = tok.strip()
                if tok:
                    out.append((tok, f"line {n} of {name}: "))
        return out, f"file {name}"
    out = [(tok.strip(), "") for tok in value.split(",")]
    empty = [i for i, (t, _) in enumerate(out) if not t]
    if empty and len(out) > 1:
        raise RequestError(f"{what} {value!r} has an empty entry (position {empty[0] + 1}); remove the extra comma")
    return [t for t in out if t[0]], "list"


def _normpath(p: str) -> str:
    p = p.replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return re.sub(r"/+", "/", p)


class _PathIndex:
    """Map file-path ids (relative to the dataset root) to training indices; also accepts a unique path
    suffix (``cat/0001.png`` for ``train/cat/0001.png``) or a longer path ending in a known id."""

    def __init__(self, train_ids: Sequence[Any]):
        self.ids = [_normpath(str(t)) for t in train_ids]
        self.exact: Dict[str, int] = {}
        for i, t in enumerate(self.ids):
            self.exact.setdefault(t, i)
        self._suffix: Optional[Dict[str, List[int]]] = None

    def _suffixes(self) -> Dict[str, List[int]]:
        if self._suffix is None:
            self._suffix = {}
            for i, t in enumerate(self.ids):
                parts = t.split("/")
                for j in range(1, len(parts)):
                    self._suffix.setdefault("/".join(parts[j:]), []).append(i)
        return self._suffix

    def lookup(self, token: str) -> Optional[List[int]]:
        p = _normpath(token)
        if p in self.exact:
            return [self.exact[p]]
        hits = self._suffixes().get(p)
        if hits:
            return hits
        parts = p.split("/")
        for j in range(1, len(parts)):  # an absolute or longer path that ends in a known id
            q = "/".join(parts[j:])
            if q in self.exact:
                return [self.exact[q]]
        return None


def _has_path_ids(train_ids) -> bool:
    return train_ids is not None and len(train_ids) > 0 and isinstance(train_ids[0], (str, os.PathLike))


# ----------------------------------------------------------------------------------------------------------
# forget ids
# ----------------------------------------------------------------------------------------------------------


def parse_forget_ids(value: str, *, n_train: int, train_ids: Optional[Sequence[Any]] = None) -> List[int]:
    """Parse ``--forget-ids``: a comma list, or ``@FILE`` (a file with one id per line) -> training indices,
    in request order. Only a value starting with ``@`` is read as a file; any other value is an id list.

    An id is an integer index in ``[0, n_train)`` or, when ``train_ids`` holds file paths (image folders,
    UTKFace), a path relative to the dataset root (a unique suffix of one, or a longer path ending in one, is
    accepted too). Raises :class:`RequestError` on an empty request, a non-integer, a negative or
    out-of-range index, a duplicate, or an unknown path; a value that is neither an id list nor ``@FILE`` is
    refused with both forms named.
    """
    if n_train < 1:
        raise RequestError("the training set is empty; there is nothing to forget")
    value = "" if value is None else str(value).strip()
    if not value:
        raise RequestError("--forget-ids is empty; give a comma list like 3,17,42 or @FILE (a file with one id "
                           "per line)")
    paths = _has_path_ids(train_ids)
    path_index: Optional[_PathIndex] = None
    tokens, source = _tokens(value, "--forget-ids")
    if not tokens:
        raise RequestError(f"--forget-ids {source} holds no ids; put one training index per line")
    # a token that is not an id: name both forms (and the @ form of a file the value happens to name)
    forms = ("" if source != "list" else
             f" (a comma list like 3,17,42), or @FILE for a file of ids{_file_hint(value, '--forget-ids')}")
    ids: List[int] = []
    for tok, where in tokens:
        if _INT_RE.match(tok):
            i = int(tok)
            if i < 0:
                raise RequestError(f"{where}forget id {i} is negative; ids are 0-based training indices in "
                                   f"0..{n_train - 1}")
            if i >= n_train:
                raise RequestError(f"{where}forget id {i} is out of range; valid training indices are "
                                   f"0..{n_train - 1} (n_train={n_train})")
            ids.append(i)
            continue
        if not paths:
            raise RequestError(f"{where}{tok!r} is not an integer index; give 0-based training indices in "
                               f"0..{n_train - 1}{forms}")
        if path_index is None:
            path_index = _PathIndex(train_ids)
        hits = path_index.lookup(tok)
        if not hits:
            example = path_index.ids[0]
            raise RequestError(f"{where}{tok!r} is not a training file of this dataset; give integer indices or "
                               f"paths relative to the dataset root, e.g. {example!r}{forms}")
        if len(hits) > 1:
            shown = ", ".join(repr(path_index.ids[h]) for h in hits[:3]) + (", ..." if len(hits) > 3 else "")
            raise RequestError(f"{where}{tok!r} matches {len(hits)} training files ({shown}); give the path "
                               f"relative to the dataset root")
        if hits[0] >= n_train:
            raise RequestError(f"{where}{tok!r} maps to index {hits[0]}, outside 0..{n_train - 1}; train_ids "
                               f"and n_train disagree")
        ids.append(hits[0])
    seen, dups = set(), []
    for i in ids:
        if i in seen and i not in dups:
            dups.append(i)
        seen.add(i)
    if dups:
        shown = ", ".join(str(d) for d in dups[:10]) + (f" (+{len(dups) - 10} more)" if len(dups) > 10 else "")
        raise RequestError(f"duplicate forget ids: {shown}; list each training instance once")
    return ids


def random_forget_ids(k: int, *, n_train: int, seed: int, labels: Optional[np.ndarray] = None) -> List[int]:
    """``k`` distinct training indices drawn uniformly with ``numpy.random.default_rng(seed)``, ascending.

    The draw is ``rng.permutation(n_train)[:k]``, so for one seed a smaller ``k`` gives a subset of a larger
    one (nested forget sets across a k-grid). ``labels`` (optional training labels) is only checked to have
    ``n_train`` entries, so a request drawn for one dataset cannot silently be applied to another.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise RequestError(f"--forget-random {k!r} is not an integer; give the number of instances to forget")
    k = int(k)
    if k < 1:
        raise RequestError(f"--forget-random {k} must be at least 1")
    if k > n_train:
        raise RequestError(f"--forget-random {k} exceeds the {n_train} training instances; give k <= {n_train}")
    if labels is not None and len(labels) != n_train:
        raise RequestError(f"{len(labels)} labels for {n_train} training instances; pass the training labels of "
                           f"the same dataset")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.permutation(n_train)[:k])


# ----------------------------------------------------------------------------------------------------------
# relabel targets
# ----------------------------------------------------------------------------------------------------------


def parse_relabel_targets(value: str, *, labels: np.ndarray, num_classes: int, seed: int,
                          ids: Optional[Sequence[int]] = None,
                          class_names: Optional[Sequence[str]] = None) -> List[int]:
    """Parse ``--relabel-to`` for forget instances whose current labels are ``labels`` (in request order).

    ``"random"``: for each instance a class drawn uniformly from the ``num_classes - 1`` other classes with
    ``numpy.random.default_rng((seed, 1))`` (never the current label; the extra ``1`` keeps this stream
    independent of :func:`random_forget_ids` with the same seed). Otherwise a comma list, or ``@FILE`` (a file
    with one target per line), aligned with the ids; a target is a class index in ``[0, num_classes)`` or a class name
    from ``class_names``. ``ids`` only names instances in error messages. Raises :class:`RequestError` on a
    value that is none of ``random``, a target list and ``@FILE``, a count mismatch, an out-of-range class, or
    a target equal to the current label.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    n = len(labels)
    if n == 0:
        raise RequestError("there are no forget ids to relabel; give --forget-ids or --forget-random first")
    if ids is not None and len(ids) != n:
        raise RequestError(f"{len(ids)} ids for {n} labels; pass the labels of the forget ids")
    if num_classes < 2:
        raise RequestError(f"relabelling needs at least 2 classes (the model has {num_classes})")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise RequestError(f"current label {int(bad[0])} is outside 0..{num_classes - 1}; the dataset does not "
                           f"fit a {num_classes}-class model")

    def name(j: int) -> str:
        return f"instance {int(ids[j])}" if ids is not None else f"forget entry {j + 1}"

    value = "" if value is None else str(value).strip()
    if not value:
        raise RequestError("--relabel-to is empty; give 'random', a comma list of classes or @FILE (a file with "
                           "one target per line)")
    if value.lower() == "random":
        rng = np.random.default_rng((int(seed), 1))  # a stream independent of random_forget_ids(seed=seed)
        draw = rng.integers(0, num_classes - 1, size=n)
        return [int(t) for t in draw + (draw >= labels)]
    tokens, source = _tokens(value, "--relabel-to")
    lookup = {str(c): i for i, c in enumerate(class_names or [])}
    for tok, where in tokens:  # the form first: a value that is no target list is named as such
        if not (_INT_RE.match(tok) or tok in lookup):
            hint = " or a class name" if class_names else ""
            forms = ("" if source != "list" else
                     f"; --relabel-to takes 'random', a comma list of targets, or @FILE for a file of targets"
                     f"{_file_hint(value, '--relabel-to')}")
            raise RequestError(f"{where}relabel target {tok!r} is not an integer; give a class index in "
                               f"0..{num_classes - 1}{hint}{forms}")
    if len(tokens) != n:
        what = f"{source} has {len(tokens)} targets" if source != "list" else f"{len(tokens)} targets were given"
        raise RequestError(f"--relabel-to {what} but there are {n} forget ids; give one target per forget id, in "
                           f"the same order")
    targets: List[int] = []
    for j, (tok, where) in enumerate(tokens):
        t = int(tok) if _INT_RE.match(tok) else lookup[tok]
        if not 0 <= t < num_classes:
            raise RequestError(f"{where}relabel target {t} for {name(j)} is outside 0..{num_classes - 1}; give a "
                               f"class index in [0, {num_classes})")
        if t == labels[j]:
            raise RequestError(f"{where}{name(j)} already has label {t}; a relabel target must differ from it")
        targets.append(t)
    return targets


# ----------------------------------------------------------------------------------------------------------
# one call for the CLI
# ----------------------------------------------------------------------------------------------------------


def build_request(*, n_train: int, train_labels: np.ndarray, num_classes: int,
                  forget_ids: Optional[str] = None, forget_random: Optional[int] = None,
                  relabel_to: Optional[str] = None, seed: int = 0,
                  train_ids: Optional[Sequence[Any]] = None,
                  class_names: Optional[Sequence[str]] = None, unseen: bool = False) -> DeletionRequest:
    """Build a :class:`DeletionRequest` from the CLI's ``--forget-ids`` / ``--forget-random`` /
    ``--relabel-to`` values (exactly one of the first two). ``relabel_to`` makes the task ``relabel``,
    ``unseen`` the task ``unseen`` (the two exclude each other)."""
    if unseen and relabel_to is not None:
        raise RequestError("the unseen task (--reference-data) and --relabel-to exclude each other: an unseen "
                           "instance keeps its own label")
    if (forget_ids is None) == (forget_random is None):
        raise RequestError("give exactly one of --forget-ids and --forget-random")
    train_labels = np.asarray(train_labels, dtype=np.int64)
    if len(train_labels) != n_train:
        raise RequestError(f"{len(train_labels)} training labels for n_train={n_train}; pass the dataset's labels")
    if forget_ids is not None:
        ids = parse_forget_ids(forget_ids, n_train=n_train, train_ids=train_ids)
        source = f"--forget-ids {forget_ids}"
    else:
        ids = random_forget_ids(forget_random, n_train=n_train, seed=seed, labels=train_labels)
        source = f"--forget-random {forget_random} --seed {seed}"
    if relabel_to is None:
        return DeletionRequest(ids=ids, task="unseen" if unseen else "misclassify", source=source)
    targets = parse_relabel_targets(relabel_to, labels=train_labels[ids], num_classes=num_classes, seed=seed,
                                    ids=ids, class_names=class_names)
    return DeletionRequest(ids=ids, targets=targets, task="relabel", source=f"{source} --relabel-to {relabel_to}")
