"""A foreground `run` (no -d) logs what PID 1 writes, as docker's shim does whether or not a client
is attached: `logs` and `logs -f` read it during and after the run (with --rm too, while it runs),
with the container's log config; the user still sees the output as before, each stream's bytes
in order, the exit code, -i's stdin, a closed reader's EPIPE. `--log-driver none` keeps nothing;
inspect's .LogPath names the json-file log, as docker's does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import wait_until

COUNT = "i=0; while [ $i -lt {n} ]; do echo line $i; i=$((i+1)); done"


def minirun(store, *args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, MINIRUN_ROOT=str(store))
    return subprocess.Popen([sys.executable, "-m", "minirun", *args], env=env, **kw)


def container_dir(store, name_or_id: str, cli) -> str:
    cid = json.loads(cli("inspect", name_or_id).out)[0]["Id"]
    return str(store / "containers" / cid)


def test_a_foreground_runs_output_is_its_log(cli, busybox):
    """`run --name web ...; logs web` printed nothing: nothing was logged without -d."""
    script = "echo hi; echo err >&2; printf tail"
    done = cli("run", "--name", "web", "--network", "none", "busybox", "sh", "-c", script)
    assert (done.code, done.out, done.err) == (0, "hi\ntail", "err\n"), done
    shown = cli("logs", "web")
    assert (shown.code, shown.out, shown.err) == (0, "hi\ntail", "err\n"), shown
    stamped = cli("logs", "-t", "web").out.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["hi", "tail"], stamped


def test_each_stream_reaches_the_user_and_the_log_whole_and_in_order(cli, busybox):
    """3,000 lines to stdout and 3,000 to stderr: every byte shown in order, every line logged."""
    script = f"({COUNT.format(n=3000)}) & ({COUNT.format(n=3000)}) >&2; wait"
    done = cli("run", "--name", "many", "--network", "none", "busybox", "sh", "-c", script)
    expected = "".join(f"line {i}\n" for i in range(3000))
    assert (done.code, done.out, done.err) == (0, expected, expected)
    shown = cli("logs", "many")
    assert (shown.out, shown.err) == (expected, expected)


@pytest.mark.parametrize("rm", [False, True])
def test_logs_and_logs_follow_read_it_while_it_runs(busybox, isolated_store, tmp_path, rm):
    """docker logs (-f) of an attached `docker run` (with --rm too) shows what it wrote so far,
    then the rest until it exits. PID 1 waits for a file the test makes: no clock involved."""
    gate = tmp_path / "gate"
    gate.mkdir()
    script = "echo first; echo oops >&2; while [ ! -e /gate/go ]; do usleep 20000; done; echo second"
    args = ["run", *(["--rm"] if rm else []), "--name", "fg", "--network", "none", "-v", f"{gate}:/gate"]
    run = minirun(isolated_store, *args, "busybox", "sh", "-c", script, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    follow = None
    try:

        def logged() -> str:
            env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
            done = subprocess.run([sys.executable, "-m", "minirun", "logs", "fg"], env=env, capture_output=True)
            return done.stdout.decode() + "|" + done.stderr.decode()

        assert wait_until(lambda: logged() == "first\n|oops\n", timeout=60), logged()
        follow = minirun(isolated_store, "logs", "-f", "fg", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert follow.stdout is not None
        assert follow.stdout.readline() == b"first\n"
        (gate / "go").touch()
        out, err = follow.communicate(timeout=120)
        assert (follow.returncode, out, err) == (0, b"second\n", b"oops\n")
        shown, said = run.communicate(timeout=120)
        assert (run.returncode, shown, said) == (0, b"first\nsecond\n", b"oops\n")
    finally:
        for process in (run, follow):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    listed = subprocess.run([sys.executable, "-m", "minirun", "ps", "-aq"], env=env, capture_output=True, text=True)
    assert (listed.stdout == "") == rm


def test_binary_stdin_exit_code_and_a_closed_reader_are_as_before(cli, busybox, isolated_store):
    """Logging never changes what the user gets: -i's bytes back unchanged with the exit code;
    a reader that closes its pipe (`| head -1`) still ends a writer with SIGPIPE (141), as when
    PID 1 had that pipe itself, rather than the copy dropping its output for ever."""
    data = bytes(range(256)) * 512 + b"no newline at the end"
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    echoed = subprocess.run(
        [sys.executable, "-m", "minirun", "run", "-i", "--name", "bin", "--network", "none"]
        + ["busybox", "sh", "-c", "cat; exit 7"],
        input=data,
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert (echoed.returncode, echoed.stdout, echoed.stderr) == (7, data, b"")
    logged = json.loads(cli("inspect", "bin").out)[0]["LogPath"]
    with open(logged, "rb") as f:
        entries = [json.loads(line) for line in f]
    assert entries[-1]["log"].endswith("no newline at the end") and {e["stream"] for e in entries} == {"stdout"}
    assert "".join(e["log"] for e in entries) == data.decode("utf-8", "replace")  # docker's json-file: UTF-8 text
    script = "yes; echo yes=$? >&2"
    piped = subprocess.run(
        f"{sys.executable} -m minirun run --rm --network none busybox sh -c '{script}' | head -1",
        shell=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, b"y\n", b"yes=141\n"), piped


def test_a_tty_run_is_logged_as_one_stream(cli, busybox):
    """With -t, docker logs the pty's output: one stream, stdout, \\r\\n as the pty wrote it."""
    done = cli("run", "-t", "--name", "tty", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (done.code, done.out) == (0, "out\r\nerr\r\n"), done
    shown = cli("logs", "tty")
    assert (shown.out, shown.err) == ("out\r\nerr\r\n", "")


def test_the_log_config_holds_for_a_foreground_run(cli, busybox, isolated_store):
    """max-size/max-file rotate a foreground run's log as a detached one's (one writer for both)."""
    args = ["--log-opt", "max-size=20k", "--log-opt", "max-file=3"]
    done = cli("run", "--name", "rot", "--network", "none", *args, "busybox", "sh", "-c", COUNT.format(n=3000))
    assert done.code == 0 and done.out.count("\n") == 3000
    directory = container_dir(isolated_store, "rot", cli)
    files = sorted(n for n in os.listdir(directory) if n.startswith("container.log"))
    assert files == ["container.log", "container.log.1", "container.log.2"], files
    assert max(os.path.getsize(os.path.join(directory, n)) for n in files) <= 20 << 10
    shown = [int(line.split()[1]) for line in cli("logs", "rot").out.splitlines()]
    assert shown and shown[-1] == 2999 and shown == list(range(shown[0], 3000)) and shown[0] > 0


def test_the_none_driver_keeps_nothing_and_inspect_says_where_the_log_is(cli, busybox, isolated_store):
    silent = cli("run", "--name", "silent", "--log-driver", "none", "--network", "none", "busybox", "echo", "shown")
    assert (silent.code, silent.out) == (0, "shown\n")
    assert not [n for n in os.listdir(container_dir(isolated_store, "silent", cli)) if n.startswith("container.log")]
    refused = cli("logs", "silent")
    assert refused.code == 125 and refused.err == "minirun: error: configured logging driver does not support reading\n"
    assert cli("inspect", "-f", "{{.LogPath}}", "silent").out == "\n"
    assert cli("run", "--name", "kept", "--network", "none", "busybox", "true").code == 0
    path = cli("inspect", "-f", "{{.LogPath}}", "kept").out.strip()
    assert path == os.path.join(container_dir(isolated_store, "kept", cli), "container.log") and os.path.isfile(path)
    # docker's: a container never started has no log yet; `local`'s file is the daemon's own business
    assert cli("create", "--name", "new", "busybox", "true").code == 0
    assert cli("run", "--name", "loc", "--log-driver", "local", "--network", "none", "busybox", "true").code == 0
    assert cli("inspect", "-f", "[{{.LogPath}}]", "new", "loc").out == "[]\n[]\n"
    # the store's default driver counts for a foreground run too
    (isolated_store / "daemon.json").write_text('{"log-driver": "none"}')
    assert cli("run", "--name", "quiet", "--network", "none", "busybox", "echo", "x").out == "x\n"
    assert cli("logs", "quiet").code == 125


def test_a_run_through_an_oci_runtime_is_logged_too(cli, busybox):
    import shutil

    if not shutil.which("runc"):
        pytest.skip("no runc")
    script = "echo via runc; echo err >&2"
    done = cli("run", "--name", "oci", "--runtime", "runc", "--network", "none", "busybox", "sh", "-c", script)
    assert (done.code, done.out, done.err) == (0, "via runc\n", "err\n"), done
    shown = cli("logs", "oci")
    assert (shown.out, shown.err) == ("via runc\n", "err\n")


def test_logs_follow_of_a_detached_rm_container_ends_with_it(busybox, isolated_store, tmp_path):
    """`logs -f` of a `run -d --rm` container followed for ever once the container was removed:
    the record gone, its last state (running) was taken as still true."""
    gate = tmp_path / "gate"
    gate.mkdir()
    script = "echo first; while [ ! -e /gate/go ]; do usleep 20000; done; echo second"
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    started = subprocess.run(
        [sys.executable, "-m", "minirun", "run", "-d", "--rm", "--name", "drm", "--network", "none"]
        + ["-v", f"{gate}:/gate", "busybox", "sh", "-c", script],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert started.returncode == 0, started
    follow = minirun(isolated_store, "logs", "-f", "drm", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert follow.stdout is not None and follow.stdout.readline() == b"first\n"
        (gate / "go").touch()
        out, err = follow.communicate(timeout=120)
        assert (follow.returncode, out, err) == (0, b"second\n", b"")
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
