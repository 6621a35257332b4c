"""The argument parser of every lean verb (commands.py), and the help layout every verb shares:
click's plain layout, which typer's verbs print (typerapp.py) and `minirun --help` uses too."""

from __future__ import annotations

import argparse

from minirun.errors import UsageError

HELP_WIDTH = 80
FIRST_COLUMN_MAX = 30  # click's col_max


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 125) instead of printing usage and exiting 2,
    and prints its help in the shared layout."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)

    def _get_formatter(self) -> argparse.HelpFormatter:
        # add_argument asks for a formatter to check each metavar; without a width argparse's
        # asks the terminal, importing shutil (and with it bz2, lzma, fnmatch) on every start
        return argparse.HelpFormatter(prog=self.prog, width=HELP_WIDTH)  # no parser here sets formatter_class

    def format_help(self) -> str:
        usage = (self.usage or self.prog).replace("%(prog)s", self.prog)
        if usage.startswith("usage: "):
            usage = usage[len("usage: ") :]
        rows, arguments = [], []
        for action in self._actions:
            if not action.option_strings:  # an argument with help of its own gets a line of it
                if action.help and action.help != argparse.SUPPRESS:
                    arguments.append((action.metavar or action.dest.upper(), action.help))
                continue
            if action.help == argparse.SUPPRESS:
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
