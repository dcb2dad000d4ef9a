"""File safety: atomic writes, hashes and output-path checks.

A deletion request is a compliance operation: an interrupted run must never leave a partial file that looks
valid, and must never overwrite its input. Every file l2ul writes goes through :func:`atomic_write` (or
:func:`atomic_path`); a set of files that belong together (a model and its report) through
:func:`publish_together`, under :func:`output_lock`; every output path through :func:`check_output_path`.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

from .errors import L2ULError

PathLike = Union[str, os.PathLike]


def _publish_mode(path: Path) -> int:
    """Permissions for a new file at ``path``: those of the file it replaces, else ``0o666`` minus the umask
    (what ``open(path, "w")`` would give). ``tempfile.mkstemp`` creates files ``0o600``, which would otherwise
    leave every output readable by its owner only."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file next to ``path``; on success fsync and rename it over ``path``.

    If the body raises (or the process is killed), ``path`` is untouched and the temporary file is removed
    (on a kill it may remain as ``.<name>.*.partial``, which no l2ul reader accepts as a model or report).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _publish_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for a writer that wants a file name (e.g. safetensors,
    matplotlib); rename it over ``path`` only if the body succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _publish_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, word in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "not a regular file"


def _real(path: PathLike) -> str:
    """The absolute path with every symbolic link resolved (as far as they resolve: never raises on a
    missing file or a link loop, unlike ``Path.resolve`` before Python 3.13)."""
    return os.path.realpath(os.path.expanduser(os.fspath(path)))


def _inside(path: str, folder: str) -> bool:
    folder = folder.rstrip(os.sep) or os.sep
    return path != folder and path.startswith(folder if folder.endswith(os.sep) else folder + os.sep)


def check_output_path(out: PathLike, *, overwrite: bool = False, inputs: Sequence[Optional[PathLike]] = ()) -> Path:
    """Refuse, before any work, an output path l2ul must not write to; return it as a ``Path``.

    ``inputs``: every file and folder the run reads (model, weights, dataset file or folder, ids and targets
    files, proxy data; :func:`l2ul.pipeline.run_inputs` lists them). Refused always, ``overwrite`` or not:

    - an input, reached by any path (another spelling, a symbolic link, a hard link), or a path inside an
      input folder;
    - an existing path that is not a regular file: a directory, a device node, a FIFO, a socket, a symbolic
      link to one of those, or a symbolic link that leads nowhere (dangling, or a loop). l2ul replaces its
      outputs by renaming a new regular file over them, which would silently turn a device or a FIFO into
      a file.

    An existing regular file is refused unless ``overwrite``.
    """
    out = Path(out)
    real_out = _real(out)
    try:
        os.lstat(out)
        present = True
    except (FileNotFoundError, NotADirectoryError):  # (a parent that is a file: check_writable words it)
        present = False
    except OSError as e:  # e.g. a parent that is a symbolic link loop
        raise L2ULError(f"cannot write {out} ({e.strerror or e}); choose another output path") from None
    st = None
    if present:
        try:
            st = os.stat(out)
        except OSError as e:
            what = "a symbolic link loop" if e.errno == errno.ELOOP else "a symbolic link that leads nowhere"
            raise L2ULError(f"refusing to write {out}: it is {what}; remove it or choose another output "
                            "path") from None
    for inp in inputs:
        if inp is None:
            continue
        real_in = _real(inp)
        same = real_in == real_out
        if not same and st is not None:
            with contextlib.suppress(OSError):
                same = os.path.samefile(out, inp)  # a hard link, or a bind mount
        if same:
            raise L2ULError(f"refusing to write {out}: it is an input of this run; choose another output path")
        if os.path.isdir(real_in) and _inside(real_out, real_in):
            raise L2ULError(f"refusing to write {out}: it is inside {inp}, an input folder of this run; choose "
                            "another output path")
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise L2ULError(f"{out} is a directory; give a file path")
        if not stat.S_ISREG(st.st_mode):
            link = " (through a symbolic link)" if os.path.islink(out) else ""
            raise L2ULError(f"refusing to write {out}: it is {_kind(st.st_mode)}{link}, not a regular file; "
                            "l2ul writes only regular files: choose another output path")
        if not overwrite:
            raise L2ULError(f"{out} already exists; choose another path or pass --overwrite")
    return out


def check_writable(out: PathLike) -> None:
    """Fail before any work if ``out``'s folder cannot be created or written."""
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise L2ULError(f"cannot write {out}: {probe} is a file, not a folder; choose another output path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise L2ULError(f"cannot write {out}: no write permission in {probe}; choose another output path")


# ------------------------------------------------------------------------------------ publishing together

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
    import json

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
    import json

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


# ---------------------------------------------------------------------------------------------- input checks

def check_input_path(path: PathLike, what: str = "input") -> None:
    """Refuse an input path no reader could use safely: a symbolic link loop, or an existing path that is
    neither a regular file nor a folder (a FIFO or a device would block or stream forever, a socket cannot be
    read). A missing path is left to the reader, whose message names what it expected."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise L2ULError(f"{what} {path} is a symbolic link that leads nowhere; check the path") from None
        return
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise L2ULError(f"{what} {path} is a symbolic link loop; give the real path") from None
        raise L2ULError(f"cannot read {what} {path} ({e.strerror or e}); check the path") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise L2ULError(f"{what} {path} is {_kind(st.st_mode)}, not a file or a folder; give a regular file")


def check_npz(path: PathLike, what: str = "npz file") -> None:
    """Read an ``.npz`` through once before anything uses it and refuse it (:class:`~l2ul.errors.DataError`,
    one line) unless it is a complete zip file (not truncated), every member is a ``.npy`` array whose data
    passes its CRC check, and no member holds Python objects (``dtype=object``: loading those means
    unpickling, which l2ul never does). A missing file is left to the reader."""
    import zipfile
    import zlib

    import numpy as np

    from .errors import DataError

    path = Path(path)
    if not path.is_file():
        return
    member = None
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                member = info.filename
                if info.is_dir() or not member.endswith(".npy"):
                    raise DataError(f"{what} {path} holds {member!r}, which is not a .npy array; an npz holds "
                                    "only arrays (numpy.savez): re-create the file")
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                        version, np.lib.format.read_array_header_2_0)
                    _, _, dtype = read_header(f)
                    if dtype.hasobject:
                        raise DataError(f"{what} {path}: {member!r} holds Python objects (dtype {dtype}); l2ul "
                                        "never unpickles data: store plain numeric arrays")
                    while f.read(1 << 22):  # the CRC is checked when the member has been read whole
                        pass
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as e:
        where = f" ({member!r})" if member else ""
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{what} {path} is damaged or not an npz{where}: {reason}; re-create or re-download "
                        "it") from None


#: Image file extensions (those ``torchvision.datasets.ImageFolder`` reads).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def check_image_folder(root: PathLike, what: str = "image folder", *, same_size: Sequence[str] = (),
                       output_size: Optional[Callable[[Tuple[int, int]], Tuple[int, int]]] = None) -> None:
    """Walk an image folder before anything reads it and refuse (:class:`~l2ul.errors.DataError`, one line)
    an entry that is neither a regular file nor a folder (a FIFO would block the reader forever, a device
    would stream), a symbolic link that leads nowhere or in a loop (a folder cycle included), and an image
    file whose header cannot be read. In the sub-folders ``same_size`` (e.g. ``train``, ``test``) every image
    must come out with the same size: its ``(width, height)`` after ``output_size`` (default: unchanged). A
    missing folder is left to the reader."""
    from .errors import DataError

    root = Path(root)
    if not root.is_dir():
        return
    seen = set()
    sizes = {}
    for folder, dirs, files in os.walk(root, followlinks=True):
        try:
            st = os.stat(folder)
        except OSError as e:
            raise DataError(f"{what} {root}: cannot read {folder} ({e.strerror or e})") from None
        if (st.st_dev, st.st_ino) in seen:
            raise DataError(f"{what} {root}: {folder} is a symbolic link back to a folder above it (a loop); "
                            "remove the link")
        seen.add((st.st_dev, st.st_ino))
        rel = Path(folder).relative_to(root).parts
        split = rel[0] if rel else None
        for name in files + dirs:
            p = os.path.join(folder, name)
            try:
                mode = os.stat(p).st_mode
            except OSError as e:
                what_link = "a symbolic link loop" if e.errno == errno.ELOOP else "a symbolic link that leads nowhere"
                raise DataError(f"{what} {root}: {p} is {what_link}; remove it") from None
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise DataError(f"{what} {root}: {p} is {_kind(mode)}, not an image file; remove it")
        if split not in same_size:
            continue
        for name in files:
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            p = os.path.join(folder, name)
            try:
                from PIL import Image

                with Image.open(p) as im:  # (reads the header only)
                    size = tuple(im.size)
            except Exception as e:  # noqa: BLE001 - PIL raises many kinds for a damaged file
                raise DataError(f"{what} {root}: {p} is not a readable image ({type(e).__name__}); remove or "
                                "replace it") from None
            size = tuple(output_size(size)) if output_size else size
            first = sizes.setdefault("all", (size, p))  # (one size for every split: the model's input)
            if size != first[0]:
                raise DataError(f"{what} {root}: {p} is {size[0]}x{size[1]} but {first[1]} is "
                                f"{first[0][0]}x{first[0][1]}; the images of a folder dataset must have one size: "
                                "resize them, or load the folder with ?resize=R&crop=C")
