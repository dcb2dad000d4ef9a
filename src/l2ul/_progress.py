"""Progress bars on stderr (tqdm), shared by the engine, attacks and training; ``None`` when disabled."""
from __future__ import annotations

import sys


def progress_bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
