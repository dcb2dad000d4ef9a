"""File safety: atomic writes, hashes and output-path checks.

A deletion request is a compliance operation: an interrupted run must never leave a partial file that looks
valid, and must never overwrite its input. Every file l2ul writes goes through :func:`atomic_write` (or
:func:`atomic_path`); a set of files that belong together (a model and its report) through
:func:`l2ul.publish.publish_together`, under :func:`l2ul.publish.output_lock`; every output path through
:func:`check_output_path`. Inputs are checked before any work by :func:`check_input_path`, :func:`check_npz`
and :func:`check_image_folder`.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Tuple, Union

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


#: Moved to :mod:`l2ul.publish` (still importable from here).
_MOVED = ("publish_together", "output_lock", "check_published", "recover_incomplete", "incomplete_marker")


def __getattr__(name: str):
    if name in _MOVED:
        from . import publish

        return getattr(publish, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
