"""The argument parser of every lean verb (commands.py), and the help layout every verb shares:
click's plain layout, which typer's verbs print (typerapp.py) and `minirun --help` uses too.

`Parser` takes argparse's add_argument calls but parses the forms people type itself: importing
argparse brings re, enum, functools, gettext and shutil, ~10 ms, more than half of what `exec`
may cost. Anything it is not sure of (help, an error, an abbreviated option, `--`, a value that
looks like an option) goes to argparse built from the same calls, so help, errors and corner
cases read exactly as argparse has them (tests/unit/test_leanparser.py compares the two)."""

from __future__ import annotations

from minirun.errors import UsageError

HELP_WIDTH = 80
FIRST_COLUMN_MAX = 30  # click's col_max
SUPPRESS = "==SUPPRESS=="  # argparse.SUPPRESS and argparse.REMAINDER, without importing argparse
REMAINDER = "..."
_FLAG_ACTIONS = ("store_true", "store_false")
_TAKES_VALUE = ("store", "append")


class Namespace:
    """The parsed options as attributes, as argparse's Namespace."""

    def __init__(self, **values) -> None:
        self.__dict__.update(values)

    def __eq__(self, other) -> bool:
        return vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"Namespace({vars(self)!r})"


class Parser:
    """argparse's interface, raising UsageError (one line, exit 125) instead of printing usage and
    exiting 2, and printing its help in the shared layout."""

    def __init__(self, prog: str, usage: str | None = None, description: str | None = None, add_help: bool = True):
        self.prog, self.usage, self.description, self.add_help = prog, usage, description, add_help
        self.calls: list[tuple[tuple[str, ...], dict]] = []

    def add_argument(self, *names: str, **options) -> None:
        self.calls.append((names, options))

    def option_names(self) -> list[str]:
        names = ["-h", "--help"] if self.add_help else []
        return names + [n for names_, _ in self.calls if names_[0].startswith("-") for n in names_]

    def parse_args(self, argv: list[str]):
        parsed = fast_parse(self, argv)
        if parsed is None:
            return self.argparse_parser().parse_args(argv)
        return parsed

    def argparse_parser(self):
        """The same parser as argparse builds it: for help, errors and whatever fast_parse leaves."""
        parser = _argparse_class()(
            prog=self.prog, usage=self.usage, description=self.description, add_help=self.add_help
        )
        for names, options in self.calls:
            parser.add_argument(*names, **options)
        return parser


def _argparse_class():
    import argparse

    class ArgparseParser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(message)

        def _get_formatter(self) -> argparse.HelpFormatter:
            # without a width argparse asks the terminal, importing shutil (bz2, lzma, fnmatch)
            return argparse.HelpFormatter(prog=self.prog, width=HELP_WIDTH)  # no parser here sets formatter_class

        def format_help(self) -> str:
            usage = (self.usage or self.prog).replace("%(prog)s", self.prog)
            if usage.startswith("usage: "):
                usage = usage[len("usage: ") :]
            rows, arguments = [], []
            for action in self._actions:
                if not action.option_strings:  # an argument with help of its own gets a line of it
                    if action.help and action.help != SUPPRESS:
                        arguments.append((action.metavar or action.dest.upper(), action.help))
                    continue
                if action.help == SUPPRESS:
                    continue
                names = ", ".join(action.option_strings)
                if action.nargs != 0:
                    names += " " + (action.metavar if isinstance(action.metavar, str) else action.dest.upper())
                help_text = "Show this message and exit." if action.dest == "help" else action.help or ""
                rows.append((names, help_text % {"default": action.default}))
            text = f"Usage: {usage}\n"
            if self.description:
                text += "\n" + _wrap(self.description, 2) + "\n"
            if arguments:
                text += "\nArguments:\n" + definition_list(arguments)
            return text + "\nOptions:\n" + definition_list(rows)

    return ArgparseParser


def definition_list(rows) -> str:
    """Two columns as click's HelpFormatter.write_dl lays them out: names indented 2, the first
    column as wide as its longest entry up to 30, help 2 spaces after it and wrapped; a longer
    name puts its help on the next line."""
    rows = list(rows)
    width = min(max((len(name) for name, _ in rows), default=0), FIRST_COLUMN_MAX)
    lines = []
    for name, help_text in rows:
        if not help_text:
            lines.append(f"  {name}")
            continue
        wrapped = _wrap(help_text, 2 + width + 2).lstrip()
        if len(name) <= width:
            lines.append(f"  {name:<{width}}  {wrapped}")
        else:
            lines.append(f"  {name}\n{' ' * (2 + width + 2)}{wrapped}")
    return "\n".join(lines) + "\n"


def _wrap(text: str, indent: int) -> str:
    import textwrap

    return textwrap.fill(
        " ".join(text.split()), HELP_WIDTH - 2, initial_indent=" " * indent, subsequent_indent=" " * indent
    )


class _Option:
    """One add_argument call, as fast_parse reads it."""

    def __init__(self, names: tuple[str, ...], options: dict) -> None:
        self.names = names
        self.positional = not names[0].startswith("-")
        self.action = options.get("action", "store")
        self.nargs = options.get("nargs")
        self.choices = options.get("choices")
        self.type = options.get("type")
        if "dest" in options:
            self.dest = options["dest"]
        elif self.positional:
            self.dest = names[0]
        else:  # argparse's rule: the first long name, else the first name
            long_names = [n for n in names if n.startswith("--")]
            self.dest = (long_names or names)[0].lstrip("-").replace("-", "_")
        default = options.get("default", False if self.action == "store_true" else None)
        if self.action == "store_false" and "default" not in options:
            default = True
        if self.positional and self.nargs == REMAINDER and "default" not in options:
            default = []
        if self.type is not None and isinstance(default, str):
            default = self.type(default)  # argparse converts a string default too
        self.default = default


def fast_parse(parser: Parser, argv: list[str]) -> Namespace | None:
    """argv parsed as argparse would, for the forms people type: options (`-x V`, `-xV`, `-x=V`,
    `--long V`, `--long=V`, clustered flags `-it`), positionals in order, a REMAINDER positional
    taking everything from its first word on. None for anything else, argparse's to judge."""
    if "--" in argv:  # argparse drops it, even from a REMAINDER, by rules of its own
        return None
    options = [_Option(names, kw) for names, kw in parser.calls]
    if parser.add_help:
        options.insert(0, _Option(("-h", "--help"), {"action": "help"}))
    by_name = {name: o for o in options if not o.positional for name in o.names}
    positionals = [o for o in options if o.positional]
    values: dict = {}
    for o in options:
        if o.action != "help" and o.dest not in values:
            values[o.dest] = o.default  # the first call for a dest sets its default, as argparse
    appended: set[str] = set()
    filled = 0  # positionals given so far
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":  # a positional
            if filled == len(positionals):
                return None
            target = positionals[filled]
            if target.nargs == REMAINDER:
                values[target.dest] = list(argv[i:])
                filled += 1
                break
            if not _set(values, target, arg):
                return None
            filled += 1
            i += 1
            if filled < len(positionals) and positionals[filled].nargs == REMAINDER:
                values[positionals[filled].dest] = list(argv[i:])  # even empty, or options
                filled += 1
                break
            if filled < len(positionals) and i < len(argv) and argv[i].startswith("-"):
                return None  # argparse may give the next positional its default here
            continue
        step = _option(by_name, argv, i, values, appended)
        if step is None:
            return None
        i += step
    for target in positionals[filled:]:
        if target.nargs not in ("?", REMAINDER):
            return None  # a required one missing: argparse's error
    return Namespace(**values)


def _option(by_name: dict, argv: list[str], i: int, values: dict, appended: set[str]) -> int | None:
    """Apply the option(s) at argv[i]; the number of words used, or None to leave it to argparse."""
    arg = argv[i]
    explicit = None
    if arg in by_name:
        option = by_name[arg]
    elif "=" in arg and arg.split("=", 1)[0] in by_name:
        name, explicit = arg.split("=", 1)
        option = by_name[name]
    elif not arg.startswith("--") and arg[:2] in by_name:  # -it, -eVALUE
        option = by_name[arg[:2]]
        if option.action in _FLAG_ACTIONS:
            values[option.dest] = option.action == "store_true"
            return _option(by_name, ["-" + arg[2:]], 0, values, appended)
        explicit = arg[2:]
    else:
        return None  # an abbreviation, an unknown option, a negative number: argparse's
    if option.action in _FLAG_ACTIONS:
        if explicit is not None:
            return None
        values[option.dest] = option.action == "store_true"
        return 1
    if option.action not in _TAKES_VALUE:
        return None  # help
    used = 1
    if explicit is None:
        if i + 1 >= len(argv) or (argv[i + 1].startswith("-") and argv[i + 1] != "-"):
            return None
        explicit, used = argv[i + 1], 2
    return used if _set(values, option, explicit, appended) else None


def _set(values: dict, option: _Option, value: str, appended: set[str] | None = None) -> bool:
    if value == "--":  # argparse takes it out of any value
        return False
    if option.type is not None:
        try:
            value = option.type(value)
        except ValueError:
            return False
    if option.choices is not None and value not in option.choices:
        return False
    if option.action == "append":
        assert appended is not None
        if option.dest not in appended:  # a copy: the default list is never touched
            values[option.dest] = list(values[option.dest] or [])
            appended.add(option.dest)
        values[option.dest].append(value)
    else:
        values[option.dest] = value
    return True
