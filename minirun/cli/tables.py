"""Docker-style tables: columns as docker's tabwriter lays them out (min width 10, padding 3, no
borders), so scripts that parse docker's output parse ours. Plain text, no rich: `ps` is a hot verb
and rich costs ~25 ms of imports."""

from __future__ import annotations

from minirun.humanize import display_width

TYPE_CHECKING = False  # collections.abc is a fraction of a ms of ps's start, for an annotation
if TYPE_CHECKING:
    from collections.abc import Sequence

_MIN_WIDTH, _PADDING = 10, 3  # docker's tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], min_width: int = _MIN_WIDTH) -> str:
    table = [list(headers), *(list(row) for row in rows)]
    widths = [max(display_width(row[i]) for row in table) for i in range(len(headers))]
    lines = []
    for row in table:
        cells = [
            cell if i == len(row) - 1 else cell + " " * (max(widths[i] + _PADDING, min_width) - display_width(cell))
            for i, cell in enumerate(row)
        ]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines) + "\n"
