"""The CLI's result tables: drawn by rich when stdout is a terminal (box lines, bold headers, wrapping to
the terminal's width), and the plain aligned text of :func:`l2ul.reports.format_table` otherwise, so that
what a pipe, a log file or a test reads stays stable and greppable."""
from __future__ import annotations

import sys
from typing import Any, Iterable, Optional, TextIO


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed stream
        return False


def print_table(rows: Iterable[Any], columns, *, floatfmt: str = ".4f", file: Optional[TextIO] = None) -> None:
    """Print a table of ``rows`` (see :func:`l2ul.reports.table_cells`): the first column left-aligned, the
    others right-aligned."""
    from ..reports import format_table, table_cells

    out = file if file is not None else sys.stdout
    if not _is_terminal(out):
        print(format_table(rows, columns, floatfmt=floatfmt), file=out)
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    headers, body = table_cells(rows, columns, floatfmt=floatfmt)
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in body:
        table.add_row(*row)
    # markup and highlighting off: a cell is printed as it is (a "[...]" in a name is not rich markup)
    Console(file=out, markup=False, highlight=False).print(table)
