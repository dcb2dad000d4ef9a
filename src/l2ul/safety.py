"""File safety: atomic writes, hashes and output-path checks.

A deletion request is a compliance operation: an interrupted run must never leave a partial file that looks
valid, and must never overwrite its input. Every file l2ul writes goes through :func:`atomic_write`.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, List, Tuple, Union

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


def check_output_path(out: PathLike, *, overwrite: bool = False, inputs: tuple = ()) -> Path:
    """Refuse to write over an input file (ever) or over an existing file (unless ``overwrite``)."""
    out = Path(out)
    for inp in inputs:
        if inp is not None and Path(inp).exists() and out.exists() and os.path.samefile(out, inp):
            raise L2ULError(f"refusing to write {out}: it is an input of this run; choose another output path")
        if inp is not None and Path(inp).resolve() == out.resolve():
            raise L2ULError(f"refusing to write {out}: it is an input of this run; choose another output path")
    if out.exists() and not overwrite:
        raise L2ULError(f"{out} already exists; choose another path or pass --overwrite")
    if out.exists() and out.is_dir():
        raise L2ULError(f"{out} is a directory; give a file path")
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
