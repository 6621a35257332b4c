"""`create`, a lean verb beside `run` (cli/commands.py): run's options and checks, minus those
of running (-d, --detach-keys, --sig-proxy); the record is made in state "created" and its id
printed; `start` runs it, detached (`start -a -i` attached)."""

from __future__ import annotations


def parser():
    from minirun.cli.runargs import parser as run_parser

    return run_parser("create")


def create_command(argv: list[str], root: str | None) -> int:
    from minirun.cli.run import run_command

    return run_command(argv, root, create_only=True)
