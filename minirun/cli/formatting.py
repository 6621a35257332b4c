"""Every verb's --format, as docker's CLI reads it: nothing or `table` for the verb's own table,
`json` for one JSON object a line, `table TEMPLATE` for a Go template laid out in docker's columns
with a header row, any other text for a Go template printed as it comes (gotemplate.py).

A verb hands over its rows as documents (docker's placeholder names: .ID, .Names, ...) and the
header each placeholder has in a table (docker's formatter gives `.ID` the header CONTAINER ID);
a table's header row is the template run over those headers, as docker computes it."""

from __future__ import annotations

import sys

from minirun import leanjson

TYPE_CHECKING = False  # typing costs ~6 ms on ps's path
if TYPE_CHECKING:
    from collections.abc import Callable


def check(format_: str | None) -> None:
    """A bad template fails before the verb does any work (nothing built, pulled or read)."""
    if format_ and "{{" in format_:
        from minirun.cli.gotemplate import compile, parse_format

        compile(parse_format(format_)[1])


def is_default(format_: str | None) -> bool:
    """No format, or `table`: the verb's own table, which needs no documents."""
    return format_ is None or format_.strip() == "table"


def write(
    format_: str | None,
    documents: list[dict],
    headers: dict[str, str],
    default: Callable[[], None],
) -> None:
    """Print `documents` as `format_` asks; `default()` prints the verb's own table."""
    if format_ is None or is_default(format_):  # None first: mypy narrows on it
        default()
        return
    if format_.strip() == "json":
        sys.stdout.write("".join(leanjson.dumps(d, separators=(",", ":"), sort_keys=True) + "\n" for d in documents))
        return
    from minirun.cli.gotemplate import compile, parse_format

    is_table, text = parse_format(format_)
    template = compile(text)
    lines = [template.execute(d) for d in documents]
    if not is_table:
        sys.stdout.write("".join(line + "\n" for line in lines))
        return
    from minirun.cli.tables import render_table

    header = template.execute(_HeaderRow(headers)).split("\t")
    cells = [line.split("\t") for line in lines]
    width = max([len(header), *(len(row) for row in cells)])
    sys.stdout.write(render_table(_pad(header, width), [_pad(row, width) for row in cells]))


def write_one_each(format_: str | None, documents: list[dict]) -> bool:
    """inspect's -f: a template run on each document, one line each; False when there is no
    template (the caller prints its JSON array)."""
    if format_ is None or format_.strip() in ("", "json"):
        return False
    from minirun.cli.gotemplate import compile, parse_format

    _, text = parse_format(format_)
    template = compile(text)
    sys.stdout.write("".join(template.execute(as_go_values(d)) + "\n" for d in documents))
    return True


# keys whose values are Go maps in docker's inspect documents (the rest are structs): a missing
# key of a map reads as no value, a missing field of a struct is an error, as in docker
MAP_KEYS = {
    "Labels",
    "ExposedPorts",
    "Volumes",
    "Networks",
    "Ports",
    "PortBindings",
    "Options",
    "Data",
    "Containers",
    "Attributes",
}


def as_go_values(value: object, key: str = "") -> object:
    """A JSON document for templates: the dicts under MAP_KEYS become gotemplate.Map."""
    from minirun.cli.gotemplate import Map

    if isinstance(value, dict):
        items = {k: as_go_values(v, k) for k, v in value.items()}
        return Map(items) if key in MAP_KEYS else items
    if isinstance(value, list):
        return [as_go_values(v) for v in value]
    return value


class _HeaderRow:
    """What the table's header row is made from: each placeholder's header, and for one docker
    names no header, the placeholder's name in capitals (as docker does). An object, not a dict:
    the template engine reads an object's fields through getattr, so any name answers."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._headers.get(name, name.upper())

    def Label(self, key: str) -> str:  # noqa: N802  (ps's `.Label "key"` heads its column LABEL)
        return self._headers.get("Label", "LABEL")


def _pad(row: list[str], width: int) -> list[str]:
    return row + [""] * (width - len(row))
