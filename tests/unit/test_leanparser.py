"""The lean verbs' own parser (cli/leanparser.fast_parse) against argparse built from the same
add_argument calls: wherever fast_parse answers, argparse must answer the same; where argparse
refuses, fast_parse must leave it to argparse (None), so errors and help stay argparse's."""

from __future__ import annotations

import random

import pytest

from minirun.cli import attachcmd, diffcmd, execargs, imagescmd, importcmd, loadcmd, ps, runargs
from minirun.cli.leanparser import Parser, fast_parse
from minirun.errors import UsageError

PARSERS = {
    "run": lambda: runargs.parser("run"),
    "create": lambda: runargs.parser("create"),
    "exec": execargs.parser,
    "ps": ps.parser,
    "images": imagescmd.parser,
    "import": importcmd.parser,
    "load": loadcmd.parser,
    "diff": diffcmd.parser,
    "attach": attachcmd.parser,
}

TYPED = [
    ("run", ["--rm", "--network", "none", "busybox", "true"]),
    ("run", ["-d", "--name", "web", "-p", "8080:80", "-e", "A=1", "-eB=2", "-e=C=3", "busybox", "sh", "-c", "x y"]),
    ("run", ["-it", "--rm", "-v", "/srv:/data:ro", "busybox", "sh"]),
    ("run", ["-itd", "busybox"]),
    ("run", ["--sig-proxy=false", "--env=X=1", "-h", "host", "busybox", "--rm", "-x"]),
    ("run", ["--rm", "busybox", "--", "x"]),
    ("run", ["--rm", "--", "busybox"]),
    ("run", ["--rm"]),
    ("run", ["--name"]),
    ("run", ["--name", "-x", "busybox"]),
    ("run", ["--nam", "x", "busybox"]),
    ("run", ["--rm=1", "busybox"]),
    ("run", ["--help"]),
    ("run", ["-i", "-t", "-", "x"]),
    ("run", ["--stop-timeout", "-1", "busybox"]),
    ("run", ["-ie", "A=1", "busybox"]),
    ("create", ["-d", "busybox"]),
    ("exec", ["c", "true"]),
    ("exec", ["-it", "c", "sh", "-c", "echo -it"]),
    ("exec", ["-u", "0:0", "-w", "/tmp", "-e", "A=1", "--privileged", "c", "env"]),
    ("exec", ["c"]),
    ("exec", []),
    ("exec", ["-h"]),
    ("exec", ["-q", "c", "true"]),
    ("ps", ["-a"]),
    ("ps", ["-aq", "--no-trunc"]),
    ("ps", ["-n", "3", "-f", "status=running", "-f", "name=x", "--format", "{{.ID}}"]),
    ("ps", ["-n", "x"]),
    ("ps", ["-n3"]),
    ("ps", ["-n", "-1"]),
    ("ps", ["extra"]),
    ("images", ["-q", "busybox"]),
    ("images", ["busybox", "-a"]),
    ("images", ["a", "b"]),
    ("import", ["a.tar", "img:1", "-m", "msg", "-c", "CMD x"]),
    ("import", ["a.tar", "-m", "msg", "img:1"]),
    ("import", ["-", "img"]),
    ("import", []),
    ("load", ["-i", "a.tar"]),
    ("load", ["-q", "--input=a.tar"]),
    ("load", ["-qi", "a.tar"]),
    ("load", ["--input"]),
    ("load", ["a.tar"]),
    ("diff", ["c"]),
    ("attach", ["--no-stdin", "--sig-proxy=false", "c"]),
    ("attach", ["--detach-keys", "ctrl-a,x", "c"]),
]


_BUILT: dict[str, tuple[Parser, object]] = {}


def built(verb: str):
    """The verb's Parser and the argparse parser made from it, once: building run's costs ~5 ms."""
    if verb not in _BUILT:
        parser = PARSERS[verb]()
        _BUILT[verb] = (parser, parser.argparse_parser())
    return _BUILT[verb]


def argparse_answer(verb: str, argv: list[str]):
    try:
        return built(verb)[1].parse_args(argv)
    except (UsageError, SystemExit) as exc:
        return type(exc)


def check(verb: str, argv: list[str]) -> bool:
    """True when fast_parse answered (and agreed); False when it left argv to argparse."""
    fast = fast_parse(built(verb)[0], argv)
    expected = argparse_answer(verb, argv)
    if fast is None:
        return False
    assert isinstance(expected, object) and not isinstance(expected, type), (verb, argv, expected)
    assert vars(fast) == vars(expected), (verb, argv)
    return True


@pytest.mark.parametrize(("verb", "argv"), TYPED, ids=[f"{v} {' '.join(a)}" for v, a in TYPED])
def test_fast_parse_agrees_with_argparse(verb: str, argv: list[str]) -> None:
    check(verb, argv)


def test_the_common_forms_never_import_argparse() -> None:
    assert check("run", ["--rm", "--network", "none", "busybox", "true"])
    assert check("exec", ["-it", "c", "sh"])
    assert check("ps", ["-a", "--format", "{{.Names}}"])
    assert check("run", ["-d", "-eA=1", "-e=B", "--name=x", "-p", "80", "img", "cmd", "--flag"])


def test_random_command_lines_agree() -> None:
    """Words drawn from each parser's own option names, values and the odd shapes that trip
    parsers (`-`, `--`, `=`, a leading dash): 2,000 command lines, a fixed seed."""
    rng = random.Random(16)
    words = ["-", "--", "x", "a=b", "-1", "=", "busybox", "sh", "-c", "--x=y", "-it", "-ti", ""]
    answered = 0
    for _ in range(2000):
        verb = rng.choice(list(PARSERS))
        names = built(verb)[0].option_names()
        argv = []
        for _ in range(rng.randint(0, 6)):
            pick = rng.random()
            if pick < 0.5:
                name = rng.choice(names)
                argv.append(name + ("=" + rng.choice(words) if rng.random() < 0.2 else ""))
            elif pick < 0.6 and names:
                argv.append(rng.choice([n for n in names if len(n) == 2] or names) + rng.choice(["t", "i", "x"]))
            else:
                argv.append(rng.choice(words))
        answered += check(verb, argv)
    assert answered > 300  # the fast path is the one taken, not a formality
