"""The dataset registry: ``@register_dataset`` adds a loader under a name, :func:`load_dataset` parses a spec
(``name``, ``name:PATH``, ``name:PATH?key=value&...``) and calls the loader registered under ``name``.

The registry checks what every spec has in common, so a loader only sees well-formed input: an unknown name
lists the valid specs, a ``takes_path`` dataset needs ``:PATH`` and the others refuse one, and ``?options``
must be among those the dataset declares. :func:`describe_specs` (CLI help, ``l2ul info``, the unknown-spec
error) and :func:`list_datasets` are generated from the entries, in registration order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import parse_qsl

from ..errors import DataError
from .bundle import DatasetBundle, PathLike


@dataclass(frozen=True)
class LoadArgs:
    """What :func:`load_dataset` passes to a registered loader, already checked against its entry."""

    spec: str  #: the spec as the caller wrote it (for messages)
    name: str  #: the registered name (an alias resolved to it)
    path: Optional[Path]  #: ``PATH`` with ``~`` expanded for ``takes_path`` datasets, else None
    options: Dict[str, str]  #: the ``?key=value`` options; only keys the entry declares
    data_dir: Optional[Path]  #: ``load_dataset(data_dir=...)`` with ``~`` expanded, or None
    download: bool
    augment: bool


Loader = Callable[[LoadArgs], DatasetBundle]


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset (see :func:`register_dataset` for the fields)."""

    name: str
    loader: Loader
    help: str
    takes_path: bool
    options: Tuple[str, ...]
    usage: str
    aliases: Tuple[str, ...]


#: name -> entry, in registration order (the order of :func:`list_datasets` and :func:`describe_specs`)
_REGISTRY: Dict[str, DatasetEntry] = {}


def register_dataset(name: str, *, help: str = "", takes_path: bool = False, options: Sequence[str] = (),
                     usage: Optional[str] = None, aliases: Sequence[str] = ()) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader(args: LoadArgs) -> DatasetBundle`` as the dataset spec ``name``.

    ``help`` is the one-line description :func:`describe_specs` prints (default: the loader's docstring's
    first line). ``takes_path``: the spec is ``name:PATH`` (required) rather than plain ``name`` (which then
    refuses a path). ``options``: the ``?key=value`` keys the loader accepts (none by default; others are
    refused before the loader runs). ``usage`` is the spec as listed (default ``name`` or ``name:PATH``);
    ``aliases`` are other names that load the same dataset.
    """
    names = [name, *aliases]
    for n in names:
        if not n or n != n.strip().lower() or any(c in n for c in ":? "):
            raise ValueError(f"dataset names must be lower case without ':', '?' or spaces: {n!r}")
        if _lookup(n) is not None:
            raise ValueError(f"dataset {n!r} is already registered")

    def decorator(loader: Loader) -> Loader:
        text = help or ((loader.__doc__ or "").strip().splitlines() or [""])[0]
        spec_usage = usage or (f"{name}:PATH" if takes_path else name)
        _REGISTRY[name] = DatasetEntry(name, loader, text, bool(takes_path), tuple(options), spec_usage,
                                       tuple(aliases))
        return loader

    return decorator


def _lookup(name: str) -> Optional[DatasetEntry]:
    entry = _REGISTRY.get(name)
    if entry is None:
        entry = next((e for e in _REGISTRY.values() if name in e.aliases), None)
    return entry


def list_datasets() -> List[str]:
    """The registered dataset names (aliases left out), in registration order."""
    return list(_REGISTRY)


def dataset_specs() -> List[Tuple[str, str]]:
    """``(usage, one-line description)`` for every registered dataset; :func:`describe_specs` formats it."""
    return [(e.usage, e.help) for e in _REGISTRY.values()]


def describe_specs() -> str:
    """The accepted dataset specs, one per line, for CLI help and error messages."""
    specs = dataset_specs()
    width = max((len(s) for s, _ in specs), default=0)
    return "\n".join(f"  {s.ljust(width)}  {d}" for s, d in specs)


def _split_spec(spec: str) -> Tuple[str, Optional[str], Dict[str, str]]:
    """``"name:PATH?k=v&k2=v2"`` -> ``(name, PATH or None, {k: v})``; a trailing ``?...`` counts as options
    only when it holds ``key=value`` pairs (so a ``?`` elsewhere in a path is kept)."""
    spec = str(spec).strip()
    options: Dict[str, str] = {}
    head, q, query = spec.rpartition("?")
    if q and "=" in query:
        spec, options = head, dict(parse_qsl(query, keep_blank_values=True))
    name, sep, path = spec.partition(":")
    return name.strip().lower(), (path if sep else None), options


def _unknown_spec(spec: str) -> DataError:
    return DataError(f"unknown dataset spec {spec!r}; valid specs:\n{describe_specs()}")


def _check_options(spec: str, entry: DatasetEntry, options: Dict[str, str]) -> None:
    if not options:
        return
    if not entry.options:
        raise DataError(f"dataset spec {spec!r} takes no options (got {', '.join(sorted(options))}); "
                        f"remove the '?...' part")
    unknown = set(options) - set(entry.options)
    if unknown:
        raise DataError(f"{entry.name}: unknown option(s) {', '.join(sorted(unknown))}; "
                        f"valid: {', '.join(entry.options)}")


def load_dataset(spec: str, *, data_dir: Optional[PathLike] = None, download: bool = False,
                 augment: bool = False) -> DatasetBundle:
    """Load a dataset by spec (see :mod:`l2ul.data` or :func:`describe_specs`).

    ``data_dir``: where torchvision datasets live (and the cifar10-jpeg decode cache); ``download``: let
    torchvision fetch missing files; ``augment``: add the pre-training augmentation to ``bundle.train``.
    """
    name, path, options = _split_spec(spec)
    data_dir = Path(data_dir).expanduser() if data_dir is not None else None
    entry = _lookup(name)
    if entry is None:
        raise _unknown_spec(spec)
    if entry.takes_path and not path:
        raise DataError(f"dataset spec {spec!r} needs a path: use {name}:PATH")
    if not entry.takes_path and path:
        raise DataError(f"dataset spec {spec!r} takes no path; use {name!r} and --data-dir DIR")
    _check_options(spec, entry, options)
    args = LoadArgs(spec=spec, name=entry.name, path=Path(path).expanduser() if entry.takes_path else None,
                    options=options, data_dir=data_dir, download=download, augment=augment)
    return entry.loader(args)
