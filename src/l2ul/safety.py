"""File safety: atomic writes, hashes and output-path checks.

A deletion request is a compliance operation: an interrupted run must never leave a partial file that looks
valid, and must never overwrite its input. Every file l2ul writes goes through :func:`atomic_write`.
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


@contextlib.contextmanager
def publish_together() -> Iterator[Callable[[PathLike], Path]]:
    """Collect several output files and publish them together.

    ``stage(final)`` returns a temporary path next to ``final`` (``.<name>.*.partial<suffix>``) to write to.
    When the block ends normally every temporary file is renamed over its final path; if the block or a
    rename raises (including ``KeyboardInterrupt``), the temporary files and any final file already renamed
    by this commit are removed, so a run leaves all of its outputs or none. (Only ``SIGKILL`` can leave a
    ``.partial`` file behind; never a file at a final path.)
    """
    staged: List[Tuple[Path, Path]] = []
    published: List[Path] = []

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
            os.replace(tmp, final)
            published.append(final)
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        for final in published:
            with contextlib.suppress(OSError):
                os.unlink(final)
        raise
