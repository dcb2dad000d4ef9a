"""Publishing a set of outputs together (:func:`publish_together`: a model and its report appear whole or not
at all, as far as any l2ul reader can tell), and the lock a run holds on its outputs (:func:`output_lock`)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

from .errors import L2ULError
from .safety import PathLike, _publish_mode, _real, atomic_write, sha256_file

__all__ = ["publish_together", "output_lock", "check_published", "recover_incomplete", "incomplete_marker"]


def incomplete_marker(path: PathLike) -> Path:
    """The marker ``.<name>.incomplete`` next to ``path`` that :func:`publish_together` keeps while ``path``
    is published without the rest of its set (see there)."""
    path = Path(path)
    return path.with_name(f".{path.name}.incomplete")


def _fsync_file(path: PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: PathLike) -> None:
    with contextlib.suppress(OSError):  # (not every platform or file system can fsync a folder)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_marker(marker: Path) -> dict:
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("files"), list) and data["files"]:
            return data
    except (OSError, ValueError):
        pass
    return {}


def _sha_or_none(path: PathLike) -> Optional[str]:
    try:
        return sha256_file(path)
    except OSError:
        return None


def _committed(data: dict) -> bool:
    """Whether the set a marker describes was published whole: its last file (the commit record) is at its
    path with the content staged for it."""
    try:
        last = data["files"][-1]
        return _sha_or_none(last["path"]) == last["sha256"]
    except (KeyError, IndexError, TypeError):
        return False


def _intact_before(data: dict) -> bool:
    """Whether every path of the set still holds what it held before the interrupted publish began."""
    try:
        return all(_sha_or_none(f["path"]) == f.get("before") for f in data["files"])
    except (KeyError, TypeError):
        return False


def check_published(path: PathLike) -> None:
    """Refuse (:class:`L2ULError`) a file that :func:`publish_together` published without the rest of its set
    (an ``unlearn`` killed between renaming the model and renaming its report), or the remains of the set it
    was replacing. Every l2ul command that reads a model file checks this."""
    marker = incomplete_marker(path)
    if not os.path.lexists(marker):
        return
    data = _read_marker(marker)
    if _committed(data) or _intact_before(data):
        return  # killed after the last rename, or before the first: a whole set, only the marker is stale
    rest = ", ".join(str(f["path"]) for f in data.get("files", [])[1:]) or "its report"
    raise L2ULError(f"{path} is an incomplete output: the l2ul run that wrote it was killed before it published "
                    f"{rest} (see {marker}); rerun that command (it removes the incomplete output first), or "
                    "delete both files")


def recover_incomplete(path: PathLike) -> Optional[str]:
    """Undo a publish of ``path`` (:func:`publish_together`) that was killed before it completed, so that
    its paths hold a whole set again or nothing: remove each file that holds what that run staged; then, if
    the set it was replacing (``--overwrite``) is no longer whole, the rest of that set too; then the
    temporary files and the marker. A file that holds anything else (written since) is never touched. A set
    whose commit record was published is left as it is (only the stale marker goes). Call it with the
    output lock held (:func:`output_lock`). Returns a line saying what was removed, or ``None``."""
    marker = incomplete_marker(path)
    if not os.path.lexists(marker):
        return None
    data = _read_marker(marker)
    removed: List[str] = []
    if data and not _committed(data):
        files = data["files"]
        for f in files:
            with contextlib.suppress(OSError, KeyError, TypeError):
                if _sha_or_none(f["path"]) == f["sha256"]:
                    os.unlink(f["path"])
                    removed.append(str(f["path"]))
        if not _intact_before(data):
            for f in files:
                with contextlib.suppress(OSError, KeyError, TypeError):
                    if f.get("before") is not None and _sha_or_none(f["path"]) == f["before"]:
                        os.unlink(f["path"])
                        removed.append(f"{f['path']} (of the set it was replacing)")
        for f in files:
            with contextlib.suppress(OSError, KeyError, TypeError):
                os.unlink(f["tmp"])
    os.unlink(marker)
    if not removed:
        return None
    return f"l2ul: removed {', '.join(removed)}: the incomplete output of an interrupted run"


@contextlib.contextmanager
def publish_together() -> Iterator[Callable[[PathLike], Path]]:
    """Collect several output files and publish them together: a reader sees the whole set or none of it.

    ``stage(final)`` returns a temporary path next to ``final`` (``.<name>.*.partial<suffix>``) to write to.
    When the block ends normally the set is committed:

    1. every staged file is flushed to disk (fsync);
    2. with more than one file, a marker ``.<name>.incomplete`` (:func:`incomplete_marker`) is written next to
       each final path but the last, naming every file of the set, the sha256 staged for it and the sha256
       of what its path held before (``--overwrite``);
    3. the files are renamed over their final paths in staging order: the **last one is the commit record**
       (``unlearn`` stages the model, then its report, so the report appears last and names the model's
       sha256);
    4. the markers are removed.

    A plain rename cannot make two paths appear at once, so "the whole set or none" is defined by the commit
    record and the marker, and enforced by every l2ul reader: while a marker is next to a file, that file is
    published only if the commit record holds the content staged for it (the commit completed) or every path
    still holds what it held before (the commit had not begun). Otherwise the file is *not published*:
    :func:`check_published` refuses it (every l2ul command that reads a model runs it), and the next run
    writing the same output (:func:`recover_incomplete`, under :func:`output_lock`) removes it, and the rest
    of a set it half replaced, before it starts. So whenever a ``SIGKILL`` strikes, the paths hold the old
    set (or nothing), or the new set, or a marked incomplete state that l2ul refuses and the next run
    clears; never an unmarked model without its report. (A ``SIGKILL`` can also leave ``.partial``
    temporary files, which no l2ul reader accepts.)

    If the block or a rename raises (including ``KeyboardInterrupt``), the temporary files, any final file
    already renamed by this commit, and the markers are removed, so a run leaves all of its outputs or none.
    Once the last rename is done the set is published, whatever happens after.
    """
    staged: List[Tuple[Path, Path]] = []
    published: List[Path] = []
    markers: List[Path] = []

    def stage(final: PathLike) -> Path:
        final = Path(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial" + final.suffix, dir=final.parent)
        os.close(fd)
        staged.append((Path(tmp), final))
        return Path(tmp)

    try:
        yield stage
        for tmp, final in staged:
            os.chmod(tmp, _publish_mode(final))
            _fsync_file(tmp)
        if len(staged) > 1:
            record = {"l2ul_incomplete": 1, "pid": os.getpid(),
                      "files": [{"path": str(final), "tmp": str(tmp), "sha256": sha256_file(tmp),
                                 "before": _sha_or_none(final)} for tmp, final in staged]}
            for _, final in staged[:-1]:
                marker = incomplete_marker(final)
                with atomic_write(marker) as f:
                    f.write(json.dumps(record, indent=1).encode("utf-8"))
                markers.append(marker)
            for folder in dict.fromkeys(m.parent for m in markers):
                _fsync_dir(folder)
        for tmp, final in staged:
            os.replace(tmp, final)
            published.append(final)
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        for final in published:
            with contextlib.suppress(OSError):
                os.unlink(final)
        for marker in markers:
            with contextlib.suppress(OSError):
                os.unlink(marker)
        raise
    # committed: an interruption from here on leaves the whole set (and at most a stale marker, which
    # check_published and recover_incomplete recognise by the commit record)
    for folder in dict.fromkeys(final.parent for _, final in staged):
        _fsync_dir(folder)
    for marker in markers:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(marker)


# ------------------------------------------------------------------------------------------- output lock

def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def output_lock(*paths: PathLike) -> Iterator[None]:
    """Hold an exclusive lock on each output path for a run: ``fcntl.flock`` on ``.<name>.lock`` next to it,
    taken without waiting. Hold it from the output checks to the publish, so that two runs writing the same
    output cannot both pass the checks: the second fails at once with a one-line :class:`L2ULError`. Missing
    output folders are created (and removed again on release if still empty). The lock files are removed on
    release (a ``SIGKILL`` can leave one; it is harmless: the kernel releases the lock with the process).
    Where ``fcntl`` does not exist (Windows) no lock is taken."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    held: List[Tuple[Path, int]] = []
    made: List[Path] = []
    try:
        for path in sorted({Path(_real(p)) for p in paths}, key=str):
            missing = []
            folder = path.parent
            while not folder.exists() and folder != folder.parent:
                missing.append(folder)
                folder = folder.parent
            path.parent.mkdir(parents=True, exist_ok=True)
            made += reversed(missing)
            lock = _lock_path(path)
            while True:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    os.close(fd)
                    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise L2ULError(f"another l2ul run is writing {path} (it holds {lock}); wait for it to "
                                        "finish, or choose another output path") from None
                    raise
                try:  # the holder before us may have removed the file after we opened it: lock the one there
                    same = os.path.samestat(os.fstat(fd), os.stat(lock))
                except FileNotFoundError:
                    same = False
                if same:
                    held.append((lock, fd))
                    break
                os.close(fd)
        yield
    finally:
        for lock, fd in reversed(held):
            with contextlib.suppress(OSError):
                os.unlink(lock)  # while still holding it (see the check above)
            os.close(fd)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
