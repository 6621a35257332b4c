"""cli/quickargs.py: the quick reader of a lean verb's options means what argparse means, or steps
aside (None) and lets argparse read argv: never a different answer."""

from __future__ import annotations

import itertools
import random

import pytest

from minirun.cli import ps
from minirun.cli.quickargs import quick_parse
from minirun.errors import UsageError

TOKENS = [
    "-a",
    "--all",
    "-q",
    "-aq",
    "-qa",
    "--no-trunc",
    "--no-t",  # an abbreviation: argparse's alone
    "--format",
    "--format=",
    "--format={{.ID}}",
    "table {{.Names}}",
    "json",
    "",
    "-n",
    "-n3",
    "-an2",
    "-na",
    "--last",
    "--last=7",
    "--last=x",
    "-1",
    "5",
    " 6 ",
    "1_0",
    "-l",
    "-s",
    "-alsq",
    "-f",
    "-fstatus=exited",
    "--filter",
    "--filter=name=a",
    "name=b",
    "status=running",
    "-h",
    "--help",
    "--",
    "-",
    "-x",
    "-a=1",
    "-n=4",
    "--all=yes",
    "---a",
]


def argparse_reading(argv: list[str]) -> dict | None:
    try:
        return vars(ps.parser().parse_args(argv))
    except (UsageError, SystemExit):
        return None


def check(argv: list[str]) -> bool:
    """True when the quick reader answered (and agreed with argparse)."""
    quick = quick_parse(argv, ps.OPTIONS)
    if quick is None:
        return False
    assert argparse_reading(argv) == vars(quick), argv
    return True


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["-a"],
        ["-aq", "--no-trunc"],
        ["--format", "{{.Names}}", "-f", "status=exited", "--filter", "name=x"],
        ["-n", "3"],
        ["-an5"],
        ["--last=2", "-l"],
        ["--format="],
        ["-s", "--format", "table {{.ID}}\t{{.Size}}"],
    ],
)
def test_everyday_forms_are_read_quickly_and_as_argparse_reads_them(argv):
    assert check(argv)


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["-h"], ["--no-t"], ["-n"], ["-n", "x"], ["--format"], ["--format", "-x"], ["web"], ["--"]],
)
def test_help_errors_and_abbreviations_are_left_to_argparse(argv):
    assert quick_parse(argv, ps.OPTIONS) is None


def test_every_pair_and_many_longer_argvs_agree_or_step_aside():
    answered = sum(check(list(pair)) for pair in itertools.product(TOKENS, repeat=2))
    rng = random.Random(16)
    for _ in range(3000):
        answered += check(rng.choices(TOKENS, k=rng.randint(1, 6)))
    assert answered > 500  # most of them are read quickly, not all handed over
