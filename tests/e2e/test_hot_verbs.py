"""The hot verbs stay lean: run, exec, ps, diff, import, load, images and build never import typer,
rich, pydantic or pyroute2 (each costs tens of ms at every start). Checked with
`python -X importtime`, for real."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = {"typer", "rich", "pydantic", "pyroute2", "pyseccomp"}


def imported(store, *args: str) -> set[str]:
    return imported_and_output(store, *args)[0]


def imported_and_output(store, *args: str) -> tuple[set[str], str]:
    """The modules a command imported, and what it printed."""
    env = dict(os.environ, MINIRUN_ROOT=str(store))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "minirun", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = done.stderr.splitlines()
    return {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}, done.stdout


@pytest.fixture
def box(cli, busybox):
    assert cli("run", "-d", "--name", "box", "--network", "none", "busybox", "sleep", "300").code == 0
    # the seccomp program compiled and cached, the bridge made: what only a first start does
    assert cli("run", "--rm", "busybox", "true").code == 0
    yield "box"
    cli("rm", "-f", "box")


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--rm", "--network", "none", "busybox", "true"],
        ["run", "--rm", "busybox", "true"],
        ["exec", "box", "true"],
        ["ps"],
        ["ps", "-a"],
        ["diff", "box"],
        ["import", "/dev/null", "empty:1"],
        ["images"],
        ["load", "-i", "ARCHIVE"],
    ],
)
def test_a_hot_verb_imports_nothing_heavy(isolated_store, box, cli, tmp_path, args):
    if "ARCHIVE" in args:  # load's benchmark is against tar: typer alone was ~5 % of it
        assert cli("save", "-o", str(tmp_path / "busybox.tar"), "busybox").code == 0
        args = [str(tmp_path / "busybox.tar") if a == "ARCHIVE" else a for a in args]
    modules = imported(isolated_store, *args)
    assert "minirun" in modules  # the measurement saw the command at all
    assert not {m.split(".")[0] for m in modules} & HEAVY, sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--rm", "--network", "none", "busybox", "true"],
        ["run", "--rm", "busybox", "true"],
        ["exec", "box", "true"],
        ["ps", "-a"],
        ["images"],
    ],
)
def test_the_start_paths_import_no_dataclasses_or_typing(isolated_store, box, args):
    """dataclasses imports inspect, ~9 ms of a start: these paths use minirun.records instead;
    typing costs ~4 ms."""
    modules = imported(isolated_store, *args)
    assert "minirun" in modules
    slow = {"dataclasses", "inspect", "typing"}
    assert not modules & slow, sorted(modules & slow)


@pytest.mark.parametrize("verb", ["import", "load"])
def test_import_and_load_import_no_dataclasses(isolated_store, cli, busybox, tmp_path, verb):
    """Their benchmarks are against tar -x: dataclasses with inspect was ~5 ms of each (typing
    stays: zstandard, which the tar-split records need, imports it)."""
    assert cli("save", "-o", str(tmp_path / "busybox.tar"), "busybox").code == 0
    if verb == "import":
        args = ["import", str(tmp_path / "busybox.tar"), "imported:1"]  # a tar of tars: a rootfs all the same
    else:
        assert cli("rmi", "busybox").code == 0
        args = ["load", "-i", str(tmp_path / "busybox.tar")]
    modules = imported(isolated_store, *args)
    assert "minirun.layer.archive" in modules  # the measurement saw a layer applied
    assert not modules & {"dataclasses", "inspect"}, sorted(modules & {"dataclasses", "inspect"})


def test_the_minirun_command_runs_exec_on_a_bare_interpreter(isolated_store, box, tmp_path):
    """The `minirun` that scripts/setup.sh writes (minirun/launcher.py) starts `python -S -P`,
    and exec then imports no pure-Python stdlib package of weight: each of these costs 1-10 ms
    of a verb that runc does in 15 (argparse, json and re, enum under signal, contextlib...)."""
    command = tmp_path / "minirun"
    subprocess.run([sys.executable, "-m", "minirun.launcher", str(command)], check=True, timeout=60)
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store), PYTHONPROFILEIMPORTTIME="1")
    done = subprocess.run([str(command), "exec", box, "true"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    modules = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "minirun.runtime.execin" in modules
    heavy = {"site", "argparse", "json", "re", "enum", "functools", "collections", "contextlib", "shutil", "typing"}
    assert not modules & heavy, sorted(modules & heavy)


def test_a_cached_build_loads_no_container_code(isolated_store, cli, busybox, tmp_path):
    """A rebuild the cache answers throughout loads nothing a step that runs would need: no
    containers or runtime package, no tarfile or shutil, no OpenSSL (hashlib), no dataclasses."""
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src" / "app.sh").write_text("echo app\n")
    (ctx / "Containerfile").write_text("FROM busybox\nARG V=1\nCOPY src/ /src/\nRUN echo $V > /v\nCMD cat /v\n")
    assert cli("build", "-q", "-t", "cached", str(ctx)).code == 0
    modules, out = imported_and_output(isolated_store, "build", "--progress=plain", "-t", "cached", str(ctx))
    assert out.count(" ---> Using cache") == 4 and "Successfully tagged cached:latest" in out, out
    assert "minirun.build.builder" in modules
    assert not {m.split(".")[0] for m in modules} & HEAVY
    slow = {"dataclasses", "inspect", "typing", "hashlib", "tarfile", "shutil"}
    assert not modules & slow, sorted(modules & slow)
    assert not [m for m in modules if m.startswith(("minirun.containers", "minirun.runtime"))]


# The CLI's own modules, written as it exits (main() ends with os._exit): -X importtime cannot
# tell them from those of the processes it forks, which write to the same stderr.
_OWN_MODULES = """
import os, sys
out, me, real_exit = sys.argv.pop(1), os.getpid(), os._exit
def own_exit(code):
    if os.getpid() == me:
        with open(out, "w") as f:
            f.write("\\n".join(sorted(sys.modules)))
    real_exit(code)
os._exit = own_exit
from minirun.cli.main import main
main()
"""


def own_modules(store, tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """`minirun ARGS` on `store`, to its end, and the modules of its own process (_OWN_MODULES)."""
    listing = tmp_path / "modules"
    done = subprocess.run(
        [sys.executable, "-c", _OWN_MODULES, str(listing), *args],
        env=dict(os.environ, MINIRUN_ROOT=str(store)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, set(listing.read_text().split()) if listing.exists() else set()


@pytest.mark.parametrize(
    "args", [["create", "busybox", "true"], ["run", "-d", "--rm", "--network", "none", "busybox", "true"]]
)
def test_a_client_that_starts_nothing_itself_loads_no_ctypes(isolated_store, busybox, tmp_path, args):
    """`create` and `run -d` fork no PID 1 of their own (a monitor does, for run -d): ctypes,
    the syscalls and the root's mounts (~5 ms) are not theirs to load, not even for the guard."""
    done, modules = own_modules(isolated_store, tmp_path, *args)
    assert done.returncode == 0 and len(done.stdout.strip()) == 64, done.stderr  # the id
    assert "minirun.containers.guard" in modules
    unneeded = {"ctypes", "_ctypes", "minirun.linux", "minirun.runtime.rootfs"}
    assert not modules & unneeded, sorted(modules & unneeded)


@pytest.mark.parametrize("flags", [[], ["--security-opt", "seccomp=unconfined"]], ids=["default", "unconfined"])
def test_a_foreground_run_loads_none_of_the_code_it_does_not_run(isolated_store, cli, busybox, tmp_path, flags):
    """`run --rm` ends by discarding its record (containers/removal.py) and logs through
    containers/logfile.py, and its records need only timestamps.py: docker's other verbs
    (lifecycle.py, with the restart policies), the monitor's copier and the formats for people
    (humanize.py) were ~1.5 ms of the imports of every start. Nor does it load the seccomp
    compiler (seccompcompile.py) once the store has the program, nor for seccomp=unconfined,
    whose parse loaded it for the profile files it reads: ~0.4 ms more."""
    run = ["run", "--rm", "--network", "none", *flags, "busybox", "true"]
    assert cli(*run).code == 0  # the program compiled and cached: what only a first start does
    done, modules = own_modules(isolated_store, tmp_path, *run)
    assert done.returncode == 0, done.stderr
    assert {"minirun.containers.removal", "minirun.containers.logfile", "minirun.runtime.seccomp"} <= modules
    unneeded = {
        "minirun.containers.lifecycle",
        "minirun.containers.restartpolicy",
        "minirun.containers.logcopier",
        "minirun.humanize",
        "minirun.runtime.seccompcompile",
    }
    assert not modules & unneeded, sorted(modules & unneeded)


@pytest.mark.parametrize(
    "args",
    [["run", "--rm", "--network", "none", "busybox", "true"], ["exec", "box", "true"]],
)
def test_the_start_paths_modules_are_compiled(isolated_store, box, args):
    """With PYTHONDONTWRITEBYTECODE (as on these machines) a module without its .pyc is compiled
    anew at every start: python-prctl's prctl.py was, ~4 ms of each container's PID 1, until
    scripts/setup.sh compiled the dependencies too."""
    import importlib.util

    uncompiled = []
    for name in imported(isolated_store, *args):
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec else None
        if origin and origin.endswith(".py") and not os.path.exists(importlib.util.cache_from_source(origin)):
            uncompiled.append(origin)
    assert not uncompiled, uncompiled


@pytest.mark.parametrize(("args", "collects"), [(["ps", "-q"], False), (["volume", "ls", "-q"], True)])
def test_only_typer_verbs_run_the_cycle_collector(isolated_store, args, collects):
    """main() turns the collector off for the lean verbs' milliseconds; a typer verb may serve for
    hours (events, logs -f, stats) and gets it back. Seen at the command's own exit."""
    probe = (
        "import gc, os, sys\n"
        "from minirun.cli import main as cli\n"
        "real_exit = os._exit\n"
        "def report(code):\n"
        "    sys.stderr.write(f'collector={gc.isenabled()}\\n')\n"
        "    real_exit(code)\n"
        "os._exit = report\n"
        f"sys.argv = ['minirun', *{args!r}]\n"
        "cli.main()\n"
    )
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"collector={collects}" in done.stderr.splitlines()
