"""What every typer verb module shares: its app (plain help, the layout of the lean verbs' help),
the global options main.py parsed, the store they name, and the run of one app that turns
typer's own outcomes into minirun's (one error path: main.py's)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer
from typer.exceptions import Abort, Exit

from minirun.errors import EXIT_RUNTIME, MinirunError, UsageError, report

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


class Globals:
    """The options before the verb, parsed once by main.py."""

    root: str | None = None
    debug: bool = False


globals_ = Globals()


def new_app(help: str | None = None) -> typer.Typer:
    """A typer app for a module of verbs, or for a verb group (`network`, `system`, ...).
    rich_markup_mode=None: click's plain help, the layout the lean verbs and `minirun --help`
    share; the no-op callback keeps a one-verb module a group, so argv[0] names its verb."""
    app = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings=HELP_OPTIONS,
        help=help,
    )
    app.callback()(_no_options)
    return app


def _no_options() -> None:
    pass


def open_store():
    from minirun.store import Store

    return Store(globals_.root)


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    from minirun.cli.tables import render_table

    sys.stdout.write(render_table(headers, rows))


def print_deleted(kind: str, names: list[str]) -> None:
    """A prune's section, as docker prints it: `Deleted Containers:`, the names, a blank line."""
    if names:
        print(f"Deleted {kind}:")
        for name in names:
            print(name)
        print()


def confirm_removal(what: str, force: bool) -> bool:
    """docker's prune prompt, asked only on a terminal and without -f."""
    if force or not sys.stdin.isatty():
        return True
    answer = input(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def act_on_each(names: list[str], action: Callable[[str], None]) -> None:
    """docker's verbs on several objects: act on each in turn, a failure reported on its own line
    without stopping the rest, then exit 125 if any failed."""
    failed = False
    for name in names:
        try:
            action(name)
        except MinirunError as exc:
            report(exc)
            failed = True
    if failed:
        raise typer.Exit(EXIT_RUNTIME)


def run_app(app: typer.Typer, verb: str, argv: list[str]) -> int:
    """Run `verb argv...` on a module's app. Its outcomes become main.py's: a bad flag is
    minirun's UsageError (125, one line, as docker answers it, not click's 2), ^C or EOF at a
    prompt KeyboardInterrupt, a closed pipe BrokenPipeError (click's own main would exit 1);
    a group named without its subcommand prints its help, as docker does."""
    # typer's vendored click: its exception types are what the parse raises (typer re-exports
    # only some of them)
    from typer._click.exceptions import NoArgsIsHelpError
    from typer._click.exceptions import UsageError as ClickUsageError
    from typer.main import get_command

    # typer turns every parameter into a pydantic adapter when it builds a command: build only
    # the verb asked for, not the module's every verb
    only = new_app()
    only.registered_commands = [c for c in app.registered_commands if c.name == verb]
    only.registered_groups = [g for g in app.registered_groups if g.name == verb]
    command = get_command(only)
    argv = _docker_booleans(getattr(command, "commands", {}).get(verb, command), argv)
    try:
        with command.make_context("minirun", [verb, *argv]) as ctx:
            code = command.invoke(ctx)
    except Exit as exc:
        return exc.exit_code
    except NoArgsIsHelpError as exc:
        sys.stdout.write(exc.ctx.get_help() + "\n" if exc.ctx is not None else "")
        return 0
    except ClickUsageError as exc:
        raise UsageError(exc.format_message()) from None
    except (Abort, EOFError):
        raise KeyboardInterrupt from None
    return code if isinstance(code, int) else 0


def _docker_booleans(command, argv: list[str]) -> list[str]:
    """docker spells a boolean that defaults to true `--x=false` (and `--x=true`); click's flags
    declared `--x/--no-x` take neither: each becomes the flag click knows. Words after `--` are
    left as they are."""
    flags = {
        name
        for param in getattr(command, "params", ())
        if getattr(param, "is_flag", False)
        for name in param.opts
        if f"--no-{name[2:]}" in getattr(param, "secondary_opts", ())
    }
    if not flags:
        return argv
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + argv[i:]
        name, eq, value = arg.partition("=")
        if eq and name in flags and value.lower() in ("true", "false", "1", "0"):
            arg = name if value.lower() in ("true", "1") else f"--no-{name[2:]}"
        out.append(arg)
    return out
