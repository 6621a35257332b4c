"""The entry point: the global options parsed once, the verb looked up in the command table
(commands.py) and only its module loaded, and one way out for every verb: its exit code, or
one line on stderr for an error (125 for bad input, as docker), 130 for ^C, and a quiet 141 for
a reader that went away (`minirun ps | head -1`), as a program killed by SIGPIPE exits."""

from __future__ import annotations

import gc
import os
import sys

EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE


def split_global_options(args: list[str]) -> tuple[str | None, bool, bool, int]:
    """--root DIR / --root=DIR / --debug / -h / --help before the verb;
    returns (root, debug, help, index of the verb)."""
    root, debug, help_, i = None, False, False, 0
    while i < len(args):
        arg = args[i]
        if arg == "--root" and i + 1 < len(args):
            root, i = args[i + 1], i + 2
        elif arg.startswith("--root="):
            root, i = arg[len("--root=") :], i + 1
        elif arg == "--debug":
            debug, i = True, i + 1
        elif arg in ("-h", "--help"):
            help_, i = True, i + 1

        else:
            break
    return root, debug, help_, i


def main() -> None:
    # A lean verb lives for milliseconds, or waits in the kernel, and makes no cycles worth
    # collecting (a 3,000-file import or a build leaves ~200 objects of cyclic garbage in all): the
    # collector's full passes over the start-up's modules cost ~2.5 ms of every `run` (and ~15 % of
    # `ps`). A typer verb, which may serve for hours (events, logs -f, stats), gets it back.
    gc.disable()
    args = sys.argv[1:]
    root, debug, help_, verb_at = split_global_options(args)
    code = outcome(lambda: dispatch(args, root, debug, help_, verb_at), debug)
    # Skip the interpreter's module teardown (~12 ms of every run): nothing registers atexit
    # work, and the streams are flushed here.
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = code or EXIT_BROKEN_PIPE
    try:
        sys.stderr.flush()
    finally:
        os._exit(code)


def dispatch(args: list[str], root: str | None, debug: bool, help_: bool, verb_at: int) -> int:
    from minirun.cli.commands import COMMANDS, GROUPS, group_help, resolve_group, top_help
    from minirun.errors import UsageError

    if verb_at == len(args):
        sys.stdout.write(top_help())
        return 0
    verb, argv = args[verb_at], args[verb_at + 1 :]
    if verb in ("-v", "--version"):  # docker's one-line form of `version`
        from minirun.frontend.systeminfo import VERSION

        sys.stdout.write(f"minirun version {VERSION}\n")
        return 0
    if help_:  # `minirun --help ps`: the verb's own help
        argv = [*argv[:1], "--help"] if verb in GROUPS and argv else ["--help"]
    if verb in GROUPS:
        if not argv or argv[0] in ("-h", "--help"):
            sys.stdout.write(group_help(verb))
            return 0
        if argv[0] not in GROUPS[verb]:
            raise UsageError(f"unknown command: {verb} {argv[0]} (see 'minirun {verb} --help')")
        verb, argv = resolve_group(verb, argv) or (verb, argv)
    command = COMMANDS.get(verb)
    if command is None:
        what = "flag" if verb.startswith("-") else "command"
        raise UsageError(f"unknown {what}: {verb} (see 'minirun --help')")
    module_name, _, attribute = command.target.partition(":")
    module = __import__(module_name, fromlist=[attribute])
    target = getattr(module, attribute)
    if command.lean:
        return target(argv, root)
    gc.enable()
    from minirun.cli.typerapp import globals_, run_app

    globals_.root, globals_.debug = root, debug
    return run_app(target, verb, argv)


def outcome(action, debug: bool) -> int:
    """The one path every verb's end takes: an exit code, whatever happened."""
    try:
        return action()
    except SystemExit as exc:  # argparse's --help
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except BaseException as exc:
        from minirun.errors import report

        return report(exc, debug)


def _quiet_stdout() -> None:
    """The reader is gone: what is still buffered goes nowhere, not into an error at exit."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass
