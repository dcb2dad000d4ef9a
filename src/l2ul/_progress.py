"""Progress bars on stderr (tqdm), shared by the engine, attacks and training; ``None`` when disabled."""
from __future__ import annotations

import sys

#: for a loop that may stop before ``total`` (a step budget): no ETA, which would be that of the whole budget
_UP_TO = "{desc}: {n_fmt} of at most {total_fmt} [{elapsed}, {rate_fmt}{postfix}]"
#: for a count advanced in fractions (e.g. per PGD iteration of a batch): shown as whole units
_FRACTIONAL = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


def auto_progress(progress) -> bool:
    """``progress`` if given, else whether stderr is a terminal (an API call in a notebook or a shell shows its
    bars; one in a pipeline, a log or a test stays silent)."""
    if progress is not None:
        return bool(progress)
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_bar(enabled: bool, total: int, desc: str, *, up_to: bool = False, fractional: bool = False):
    """A tqdm bar on stderr, or ``None`` when disabled. ``up_to``: ``total`` is a budget the loop may stop
    before (the bar shows no ETA); ``fractional``: updated in fractions of a unit."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    fmt = _UP_TO if up_to else _FRACTIONAL if fractional else None
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True, bar_format=fmt)
