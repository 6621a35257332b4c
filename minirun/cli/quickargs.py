"""A lean verb's options read without argparse, for what users type every day (`ps -a`, `ps -aq
--no-trunc`, `ps --format '{{.Names}}' -f status=exited`): argparse's import and parser set-up
(gettext, locale, shutil for the help width) cost ~8 ms of a start that `ps` cannot spare.

The verb declares its options once (`Option` rows); `argparse_parser` makes its argparse parser
from them (help, errors, completion) and `quick_parse` reads argv with the same meaning as that
parser, for the forms it knows: exact flag names, short flags bundled (`-aq`, `-an5`), values
attached (`--last=5`, `-n5`) or following. Anything else (help, an abbreviation, a missing value, a
value that looks like a flag, a bad number, a positional argument, `--`) gives None, and the verb
hands argv to argparse: its messages and help stay the only ones. tests/unit/test_quickargs.py
holds the two parsers to the same results.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from minirun.cli.leanparser import Parser

FLAG, VALUE, INT, APPEND = "flag", "value", "int", "append"  # store_true, a string, type=int, action=append


class Option:
    __slots__ = ("flags", "dest", "kind", "default", "metavar", "help")

    def __init__(
        self, flags: tuple[str, ...], kind: str, help: str, default: object = None, metavar: str | None = None
    ) -> None:
        self.flags, self.kind, self.help, self.metavar = flags, kind, help, metavar
        self.dest = flags[-1].lstrip("-").replace("-", "_")
        self.default = False if kind == FLAG else default

    def fresh_default(self) -> object:
        return [] if self.kind == APPEND else self.default


class Args:
    """What argparse's Namespace gives a verb: one attribute per option."""

    def __init__(self, values: dict[str, object]) -> None:
        self.__dict__.update(values)

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...


def argparse_parser(prog: str, description: str, options: tuple[Option, ...]) -> Parser:
    from minirun.cli.leanparser import Parser

    parser = Parser(prog=prog, description=description)
    for option in options:
        extra: dict = {"metavar": option.metavar} if option.metavar else {}
        if option.kind == FLAG:
            parser.add_argument(*option.flags, action="store_true", help=option.help)
        elif option.kind == APPEND:
            parser.add_argument(*option.flags, action="append", default=[], help=option.help, **extra)
        else:
            kind = int if option.kind == INT else str
            parser.add_argument(*option.flags, type=kind, default=option.default, help=option.help, **extra)
    return parser


def quick_parse(argv: list[str], options: tuple[Option, ...]) -> Args | None:
    """argv read as `argparse_parser(options)` reads it, or None for a form left to argparse."""
    by_flag = {flag: option for option in options for flag in option.flags}
    values = {option.dest: option.fresh_default() for option in options}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg.startswith("--") and len(arg) > 2:
            name, equals, attached = arg.partition("=")
            option = by_flag.get(name)
            if option is None or (equals and option.kind == FLAG):
                return None
            if option.kind == FLAG:
                values[option.dest] = True
                continue
            if not equals:
                if i == len(argv) or argv[i].startswith("-"):
                    return None
                attached, i = argv[i], i + 1
            if not _store(values, option, attached):
                return None
        elif arg.startswith("-") and len(arg) > 1 and arg[1] != "-" and "=" not in arg:
            at = 1
            while at < len(arg):  # a bundle: flags, then perhaps one option taking the rest as its value
                option = by_flag.get("-" + arg[at])
                at += 1
                if option is None:
                    return None
                if option.kind == FLAG:
                    values[option.dest] = True
                    continue
                value = arg[at:]
                if not value:
                    if i == len(argv) or argv[i].startswith("-"):
                        return None
                    value, i = argv[i], i + 1
                if not _store(values, option, value):
                    return None
                break
        else:
            return None  # a positional argument, `--`, `-`, `--x=`: argparse says what is wrong
    return Args(values)


def _store(values: dict[str, object], option: Option, value: str) -> bool:
    if option.kind == APPEND:
        values[option.dest] = [*values[option.dest], value]  # type: ignore[misc]
    elif option.kind == INT:
        try:
            values[option.dest] = int(value)
        except ValueError:
            return False
    else:
        values[option.dest] = value
    return True
