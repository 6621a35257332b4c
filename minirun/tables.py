"""Docker-style tables drawn with rich: columns as docker's tabwriter lays them out
(min width 10, padding 3, no borders), so scripts that parse docker's output parse ours."""

from __future__ import annotations

import io
from collections.abc import Sequence


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 3, 0, 0), header_style=None)
    for header in headers:
        # min_width 7 + padding 3 = tabwriter's minimum cell width of 10
        table.add_column(header, no_wrap=True, overflow="ignore", min_width=7)
    for row in rows:
        table.add_row(*row)
    buffer = io.StringIO()
    console = Console(file=buffer, width=1 << 16, highlight=False, markup=False, emoji=False, color_system=None)
    console.print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"
