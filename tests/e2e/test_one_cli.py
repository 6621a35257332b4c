"""One CLI: every verb in the command table and nowhere else, one help layout, global options
before any verb, and one way out (125 for bad input, a quiet 141 for a closed pipe) whichever
parser the verb has."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from minirun.cli.commands import COMMANDS, top_help
from tests.e2e.test_hot_verbs import imported
from tests.helpers import f, make_tar

LEAN = sorted(name for name, c in COMMANDS.items() if c.lean)
TYPER = sorted(name for name, c in COMMANDS.items() if not c.lean)


def verbs_of(app) -> set[str]:
    """The verbs a typer app answers to: its commands and its groups."""
    return {c.name for c in app.registered_commands if not c.hidden} | {g.name for g in app.registered_groups}


def test_every_table_entry_names_what_answers_to_it():
    for name, command in COMMANDS.items():
        module_name, _, attribute = command.target.partition(":")
        target = getattr(importlib.import_module(module_name), attribute)
        if command.lean:
            assert callable(target), name
        else:
            assert name in verbs_of(target), f"{name}: not a verb of {command.target}"


def test_every_typer_verb_is_in_the_table():
    """A verb registered on an app but missing from the table could never be reached."""
    modules = {COMMANDS[name].target for name in TYPER}
    for target in modules:
        module_name, _, attribute = target.partition(":")
        app = getattr(importlib.import_module(module_name), attribute)
        assert verbs_of(app) <= set(COMMANDS), (target, verbs_of(app) - set(COMMANDS))


def test_the_top_help_lists_every_verb_once():
    text = top_help()
    listed = [line.split()[0] for line in text.split("Commands:\n", 1)[1].splitlines() if line.startswith("  ")]
    listed = [name for name in listed if name in COMMANDS]  # a wrapped summary's next line is no verb
    for name in COMMANDS:
        assert listed.count(name) == (0 if name.startswith("_") else 1), name  # _: for scripts, not users


def mr(*args: str, root, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    env = dict(os.environ, MINIRUN_ROOT=str(root))
    return subprocess.run(
        [sys.executable, "-m", "minirun", *args], stdout=stdout, stderr=subprocess.PIPE, env=env, timeout=120, text=True
    )


@pytest.mark.parametrize("verb", ["run", "exec", "ps", "diff", "import", "images", "rm", "build", "pull"])
def test_every_verb_has_the_same_help_layout(verb, isolated_store):
    done = mr(verb, "--help", root=isolated_store)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"Usage: minirun {verb}"), lines[0]
    assert lines[1] == "" and lines[2].startswith("  ") and lines[2].strip(), lines[:3]
    assert "\nOptions:\n" in done.stdout
    help_line = next(line for line in lines if "--help" in line)
    assert help_line.strip().endswith("Show this message and exit."), help_line
    # `minirun --help VERB` is the same text
    assert mr("--help", verb, root=isolated_store).stdout == done.stdout


def test_no_verb_prints_the_top_help(isolated_store):
    done = mr(root=isolated_store)
    assert done.returncode == 0 and done.stdout == top_help()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["frob"], "unknown command: frob"),
        (["--frob"], "unknown flag: --frob"),
        (["ps", "--frob"], "--frob"),
        (["images", "--frob"], "--frob"),
        (["history", "--frob"], "--frob"),
        (["network", "ls", "--frob"], "--frob"),
        (["rm"], "Missing argument"),
    ],
)
def test_bad_input_is_one_line_and_125_on_either_parser(args, needle, isolated_store):
    done = mr(*args, root=isolated_store)
    lines = done.stderr.splitlines()
    assert done.returncode == 125, done
    assert len(lines) == 1 and lines[0].startswith("minirun: error: ") and needle in lines[0], done.stderr


def test_global_options_come_before_the_verb_on_both_parsers(tmp_path, isolated_store):
    other, rootfs = tmp_path / "other-store", tmp_path / "rootfs.tar"
    rootfs.write_bytes(make_tar([f("hello", "hello\n")]))
    assert mr("--root", str(other), "import", str(rootfs), "elsewhere:1", root=isolated_store).returncode == 0
    for verb in ("images", "history"):
        there = mr(
            "--root", str(other), verb, "-q", *(["elsewhere:1"] if verb == "history" else []), root=isolated_store
        )
        assert there.returncode == 0 and len(there.stdout.split()) == 1, there
    assert mr("images", "-q", root=isolated_store).stdout == ""


@pytest.mark.parametrize("args", [["ps"], ["images"], ["history", "busybox"], ["--help"]])
def test_a_closed_pipe_ends_the_verb_quietly(args, busybox, isolated_store):
    """`minirun ps | head -0`: the reader is gone before the first byte; the verb ends as a
    program killed by SIGPIPE would (141), with nothing on stderr, whichever parser it has."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = mr(*args, root=isolated_store, stdout=write)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, ""), done


@pytest.mark.parametrize("args", [["history", "busybox"], ["history", "--help"], ["network", "ls"]])
def test_a_typer_verb_loads_typer_and_nothing_else_heavy(args, isolated_store):
    """typer, but not rich (help is plain), pydantic (typer < 0.29), pyroute2 or pyseccomp."""
    modules = {m.split(".")[0] for m in imported(isolated_store, *args)}
    assert "typer" in modules
    assert not modules & {"rich", "pydantic", "pyroute2", "pyseccomp"}, sorted(modules)


def test_every_group_subcommand_names_a_verb_or_the_groups_own():
    from minirun.cli.commands import GROUP_SUMMARIES, GROUPS

    for group, subs in GROUPS.items():
        assert group in COMMANDS
        for sub, target in subs.items():
            if target is None:
                assert (group, sub) in GROUP_SUMMARIES and sub in verbs_of(_group_app(group)), (group, sub)
            else:
                assert target[0] in COMMANDS, (group, sub)


def _group_app(group: str):
    module_name, _, attribute = COMMANDS[group].target.partition(":")
    app = getattr(importlib.import_module(module_name), attribute)
    (info,) = [g for g in app.registered_groups if g.name == group]
    return info.typer_instance


@pytest.mark.parametrize(
    "group_args, short_args",
    [
        (["container", "ls", "-a", "-q"], ["ps", "-a", "-q"]),
        (["image", "ls", "-q"], ["images", "-q"]),
        (["image", "inspect", "busybox"], ["inspect", "--type", "image", "busybox"]),
        (["image", "history", "-q", "busybox"], ["history", "-q", "busybox"]),
    ],
)
def test_a_group_subcommand_is_its_short_verb(group_args, short_args, busybox, isolated_store):
    long, short = mr(*group_args, root=isolated_store), mr(*short_args, root=isolated_store)
    assert long.returncode == short.returncode == 0, (long, short)
    assert long.stdout == short.stdout


def test_a_group_without_a_subcommand_lists_them(isolated_store):
    done = mr("container", root=isolated_store)
    assert done.returncode == 0 and done.stdout.startswith("Usage: minirun container COMMAND")
    assert "\n  ls " in done.stdout and "\n  prune " in done.stdout
    assert mr("container", "--help", root=isolated_store).stdout == done.stdout
    bad = mr("container", "frob", root=isolated_store)
    assert bad.returncode == 125 and bad.stderr.startswith("minirun: error: unknown command: container frob")
