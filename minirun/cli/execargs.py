"""`exec`'s options, parsed without typer (a lean verb: cli/commands.py says why). docker's
spelling and meaning; errors are UsageError (exit 125)."""

from __future__ import annotations

from minirun.cli.leanparser import REMAINDER, Parser
from minirun.cli.runargs import add_process_options
from minirun.errors import UsageError
from minirun.frontend.runoptions import process_env
from minirun.runtime.execin import ExecOptions


def parser() -> Parser:
    p = Parser(
        prog="minirun exec",
        add_help=False,
        usage="minirun exec [OPTIONS] CONTAINER COMMAND [ARG...]",
        description="Execute a command in a running container.",
    )
    p.add_argument("--help", action="help", help="Show this message and exit.")
    p.add_argument("-d", "--detach", action="store_true", help="Detached mode: run command in the background")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("--privileged", action="store_true", help="Give extended privileges to the command")
    add_process_options(p)
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs=REMAINDER, metavar="COMMAND")
    return p


def parse_exec_args(argv: list[str], environ: dict[str, str] | None = None) -> ExecOptions:
    ns = parser().parse_args(argv)
    if not ns.command:
        raise UsageError('"minirun exec" requires at least 2 arguments: CONTAINER COMMAND [ARG...]')
    env = process_env(ns, environ)
    if ns.detach and ns.tty:
        # nobody would ever read the terminal's output
        raise UsageError("exec -d with -t is not supported")
    return ExecOptions(
        container=ns.container,
        command=list(ns.command),
        detach=ns.detach,
        interactive=ns.interactive and not ns.detach,
        tty=ns.tty,
        env=env,
        workdir=ns.workdir,
        user=ns.user,
        privileged=ns.privileged,
    )
