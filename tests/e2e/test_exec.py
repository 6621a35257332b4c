"""`minirun exec` for real: into a foreground container the test keeps running in the background."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import termios
import time

import pytest

from minirun.containers.container import Containers
from tests.helpers import assert_sees_the_hosts_links, minirun_in

CAPS_DEFAULT = "00000000800405fb"  # docker's 14 capabilities less podman's three drops
TIMEOUT = 20


class Box:
    """`minirun run --name NAME ... busybox sh -c SCRIPT` as a background process; SCRIPT prints
    "ready" once the container may be used."""

    def __init__(self, store, name: str, script: str, *run_args: str) -> None:
        self.store, self.name = store, name
        env = dict(os.environ, MINIRUN_ROOT=str(store.root))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minirun", "run", "--name", name, *run_args, "busybox", "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.output = b""
        self.state: dict = {}

    def wait_ready(self) -> Box:
        self.read_until(b"ready\n")
        deadline = time.monotonic() + TIMEOUT
        while True:  # the CLI records "running" right after the exec; "ready" may come first
            container = Containers(self.store).find(self.name)
            if container.state["Status"] == "running":
                break
            assert time.monotonic() < deadline, container.state
            time.sleep(0.02)
        self.id, self.state, self.config = container.id, container.state, container.config
        return self

    def read_until(self, needle: bytes) -> bytes:
        deadline = time.monotonic() + TIMEOUT
        fd = self.proc.stdout.fileno()
        while needle not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, f"no {needle!r} in {self.output!r}"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                assert chunk, f"the container ended before {needle!r}: {self.output!r}"
                self.output += chunk
        return self.output

    def stop(self) -> None:
        # PID 1 ignores the SIGTERM the CLI would forward (init has no default action): SIGKILL it
        pid = self.state.get("Pid") or Containers(self.store).find(self.name).state.get("Pid")
        if self.proc.poll() is None and pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def boxes(store, busybox):
    started: list[Box] = []

    def start(script: str = "echo ready; sleep 1000", *run_args: str, name: str = "box") -> Box:
        box = Box(store, name, script, *run_args)
        started.append(box)
        return box.wait_ready()

    yield start
    for box in started:
        box.stop()


@pytest.fixture
def box(boxes):
    return boxes()


def minirun(store, *args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, MINIRUN_ROOT=str(store.root))
    return subprocess.Popen([sys.executable, "-m", "minirun", *args], env=env, **kw)


def test_exec_sees_the_containers_hostname_and_files(cli, box, isolated_store):
    hostname = cli("exec", "box", "cat", "/etc/hostname")
    assert (hostname.code, hostname.out, hostname.err) == (0, box.id[:12] + "\n", "")
    assert cli("exec", "box", "hostname").out == box.id[:12] + "\n"
    assert cli("exec", box.id[:8], "sh", "-c", "echo data > /tmp/file.txt").code == 0  # by id prefix too
    assert cli("exec", box.id, "cat", "/tmp/file.txt").out == "data\n"
    # written in the container's own layer, nowhere else
    assert (isolated_store / "containers" / box.id / "upper" / "tmp" / "file.txt").read_text() == "data\n"
    assert cli("exec", "box", "ls", "/sys/class/net").out.split() == ["eth0", "lo"]  # the container's netns


def test_host_network_is_shared_by_the_exec_too(cli, boxes):
    boxes("echo ready; sleep 1000", "--network", "host", name="hostnet")
    assert_sees_the_hosts_links(lambda: cli("exec", "hostnet", "ls", "/sys/class/net").out.split())


def test_exec_is_in_the_containers_pid_namespace(cli, box):
    ps = cli("exec", "box", "ps", "-o", "pid,comm")
    rows = [line.split() for line in ps.out.splitlines()[1:]]
    assert ["1", "sleep"] in rows
    assert len(rows) == 2 and rows[1][1] == "ps"  # PID 1 and ps itself: nothing of the host's
    assert 1 < int(cli("exec", "box", "sh", "-c", "echo $$").out) < 20
    # the exec'd process's parent is outside the namespace, as in docker
    assert cli("exec", "box", "sh", "-c", "grep PPid /proc/self/status").out.split() == ["PPid:", "0"]


def test_env_workdir_and_user(cli, boxes):
    boxes("echo ready; sleep 1000", "-e", "FROM_RUN=1", "-e", "OTHER=x", "-w", "/srv", "-u", "nobody")
    env = cli("exec", "-e", "FROM_EXEC=2", "-e", "OTHER=y", "box", "env").out.splitlines()
    assert {"FROM_RUN=1", "FROM_EXEC=2", "OTHER=y", "HOME=/home"} <= set(env)
    assert "OTHER=x" not in env and any(e.startswith("PATH=/usr/local/sbin:") for e in env)
    assert any(e.startswith("HOSTNAME=") for e in env) and "TERM=xterm" not in env
    assert cli("exec", "box", "sh", "-c", "pwd; id -u").out == "/srv\n65534\n"  # the container's
    assert (
        cli("exec", "-w", "/etc", "-u", "root", "box", "sh", "-c", "pwd; id -u; echo $HOME").out == "/etc\n0\n/root\n"
    )
    assert cli("exec", "-u", "1234:5678", "box", "id").out == "uid=1234 gid=5678\n"
    missing = cli("exec", "-w", "/nowhere", "box", "true")
    assert missing.code == 126 and missing.err.count("\n") == 1 and "/nowhere" in missing.err
    assert cli("exec", "box", "test", "-e", "/nowhere").code == 1  # exec never creates a workdir
    relative = cli("exec", "-w", "etc", "box", "true")
    assert relative.code == 125 and "absolute path" in relative.err
    nouser = cli("exec", "-u", "nosuch", "box", "true")
    assert nouser.code == 125 and "unable to find user nosuch" in nouser.err


def test_exit_codes(cli, box):
    assert cli("exec", "box", "sh", "-c", "exit 5").code == 5
    missing = cli("exec", "box", "nope")
    assert (missing.code, missing.err) == (127, 'minirun: error: exec: "nope": executable file not found in $PATH\n')
    not_executable = cli("exec", "box", "/etc/passwd")
    assert (not_executable.code, not_executable.err) == (
        126,
        'minirun: error: exec: "/etc/passwd": permission denied\n',
    )
    assert cli("exec", "box", "/etc").code == 126
    usage = cli("exec", "box")
    assert usage.code == 125 and usage.err.count("\n") == 1


def test_killed_by_a_signal_and_signals_forwarded(box, store):
    proc = minirun(store, "exec", "box", "sh", "-c", "echo started; sleep 100", stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"started\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_unknown_and_stopped_containers(cli, busybox, store):
    unknown = cli("exec", "nosuch", "true")
    assert (unknown.code, unknown.out, unknown.err) == (125, "", "minirun: error: No such container: nosuch\n")
    assert cli("run", "--name", "done", "busybox", "true").code == 0
    done = Containers(store).find("done")
    stopped = cli("exec", "done", "true")
    assert (stopped.code, stopped.err) == (125, f"minirun: error: container {done.id} is not running\n")


def test_a_reused_pid_is_not_the_container(cli, busybox, store):
    """state.json says running, but its pid now belongs to another process (or to none)."""
    assert cli("run", "--name", "gone", "busybox", "true").code == 0
    containers = Containers(store)
    gone = containers.find("gone")
    sleeper = subprocess.Popen(["sleep", "100"])
    try:
        with open(f"/proc/{sleeper.pid}/stat") as f:
            start = int(f.read().rsplit(")", 1)[1].split()[19])
        for pid, recorded in ((sleeper.pid, start - 1), (sleeper.pid, start), (0, None)):
            containers.update_state(gone, Status="running", Running=True, Pid=pid, PidStartTime=recorded)
            result = cli("exec", "gone", "true")
            # the right start time, but not a container's PID 1: its namespaces are the host's
            assert (result.code, result.err) == (125, f"minirun: error: container {gone.id} is not running\n")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_capabilities_no_new_privs_and_no_inherited_fds(cli, box, store):
    status = cli("exec", "box", "grep", "-E", "^(Cap(Prm|Eff|Bnd|Inh|Amb)|NoNewPrivs)", "/proc/self/status").out
    fields = dict(line.split(":\t") for line in status.splitlines())
    assert fields == {
        "CapInh": "0000000000000000",
        "CapPrm": CAPS_DEFAULT,
        "CapEff": CAPS_DEFAULT,
        "CapBnd": CAPS_DEFAULT,
        "CapAmb": "0000000000000000",
        "NoNewPrivs": "1",
    }
    read_end, write_end = os.pipe()
    try:
        proc = minirun(
            store, "exec", "box", "ls", "/proc/self/fd", pass_fds=(read_end, write_end), stdout=subprocess.PIPE
        )
        out = proc.communicate(timeout=TIMEOUT)[0]
    finally:
        os.close(read_end)
        os.close(write_end)
    assert out.split() == [b"0", b"1", b"2", b"3"]  # 3 is ls's own handle on the directory


def test_stdin_only_with_i(cli, box):
    assert cli("exec", "-i", "box", "cat", input=b"piped\n").out == "piped\n"
    assert cli("exec", "box", "cat", input=b"piped\n").out == ""


def test_tty(cli, box):
    result = cli("exec", "-t", "box", "sh", "-c", "tty; echo $TERM")
    assert (result.code, result.out) == (0, "/dev/pts/0\r\nxterm\r\n")
    # the container's devpts: the host's ptys are not there, and nothing was mounted for the exec
    assert cli("exec", "box", "ls", "/dev/pts").out.split() == ["ptmx"]
    assert "/dev/console" not in cli("exec", "box", "cat", "/proc/mounts").out
    not_a_tty = cli("exec", "-it", "box", "true")
    assert (not_a_tty.code, not_a_tty.err) == (125, "minirun: error: the input device is not a TTY\n")


def test_detach_returns_at_once_and_the_command_runs(cli, box, isolated_store):
    # the command waits for /tmp/go, made only after `exec -d` has returned: were the CLI to wait
    # for it, or for its stdout, it would never return (and time out), however fast the machine
    waits = "until [ -e /tmp/go ]; do sleep 0.05; done; echo later > /tmp/detached"
    detached = minirun_in(isolated_store, "exec", "-d", "box", "sh", "-c", waits, timeout=60)
    # the captured stdout closed at once: the command holds nothing of the CLI's
    assert (detached.returncode, detached.stdout, detached.stderr) == (0, "", "")
    assert cli("exec", "box", "test", "-e", "/tmp/detached").code == 1
    assert cli("exec", "box", "touch", "/tmp/go").code == 0
    deadline = time.monotonic() + TIMEOUT
    while (seen := cli("exec", "box", "cat", "/tmp/detached")).code != 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert seen.out == "later\n"
    # adopted by PID 1, as an orphan in the namespace is
    assert cli("exec", "-d", "box", "nope").code == 127  # start errors are still reported


def test_the_exec_process_cannot_be_reached_before_its_exec(box_with_trap):
    """runc CVE-2019-5736: while the exec'd process is still minirun's python (between setns and
    execve), the container's root must not open its /proc/PID/exe (the host's python), nor look
    at its fds. /etc/passwd is a fifo here, so the process waits, inside the container, in the
    middle of its setup, until PID 1 has tried everything on it. (Here it still holds every
    capability, which refuses PID 1 too; test_the_exec_cli_is_not_dumpable checks the flag that
    guards the rest of the way to execve.)"""
    box, store = box_with_trap
    # a host directory fd the CLI was (carelessly) started with: it must not go past the fork
    secret = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        exec_proc = minirun(store, "exec", "box", "echo", "exec-ran", stdout=subprocess.PIPE, pass_fds=(secret,))
    finally:
        os.close(secret)
    try:
        out = box.read_until(b"scanned\n").decode()
        assert exec_proc.wait(timeout=TIMEOUT) == 0
        assert exec_proc.stdout.read() == b"exec-ran\n"
    finally:
        if exec_proc.poll() is None:
            exec_proc.kill()
            exec_proc.wait()
        exec_proc.stdout.close()
    victims = [line for line in out.splitlines() if line.startswith("victim ")]
    assert victims, out  # it saw the waiting process...
    assert "EXPOSED" not in out, out  # ...and reached nothing of it
    # it reads the container's file: stdio, the error pipe and that fifo are all it holds (not the
    # namespaces' fds, nor the host directory its CLI was started with)
    [fds] = [sorted(map(int, line.split()[1:])) for line in out.splitlines() if line.startswith("fds ")]
    assert len(fds) == 5 and fds[:3] == [0, 1, 2], out


@pytest.fixture
def box_with_trap(boxes, store):
    script = "\n".join(
        [
            "mv /etc/passwd /etc/passwd.real && mkfifo /etc/passwd /tmp/go && echo ready",
            # a writer that gets through its open only once the exec'd process opens the fifo to read it:
            # from then on that process waits in read(), in the middle of its setup, until /tmp/go
            "( exec 4>/etc/passwd; touch /tmp/opened; read _ < /tmp/go; cat /etc/passwd.real >&4 ) &",
            # [m] keeps grep from finding its own command line
            "until v=$(grep -l '[m]inirun' /proc/[0-9]*/cmdline 2>/dev/null); [ -n \"$v\" ]; do sleep 0.02; done",
            "until [ -e /tmp/opened ]; do sleep 0.02; done",
            "for f in $v; do",
            '  d=${f%/cmdline}; echo "victim $d"',
            '  readlink $d/exe && echo "EXPOSED readlink $d/exe"',
            '  head -c1 $d/exe >/dev/null && echo "EXPOSED read $d/exe"',
            '  (echo x >> $d/exe) && echo "EXPOSED write $d/exe"',
            # the numbers are listed (the directory is root's), where they lead must stay hidden
            "  echo \"fds $(ls $d/fd | tr '\\n' ' ')\"",
            '  for l in $d/fd/*; do readlink $l && echo "EXPOSED readlink $l"; done',
            '  for l in $d/fd/*; do head -c0 $l && echo "EXPOSED open $l"; done',
            '  readlink $d/cwd && echo "EXPOSED readlink $d/cwd"',
            "done",
            "echo go > /tmp/go; wait",  # lets the exec go on
            "echo scanned",
            "sleep 1000",
        ]
    )
    return boxes(script), store


def test_no_minirun_exe_is_writable_from_an_exec(box, store):
    """Every process the container sees, and the pid the exec's parent has on the host."""
    script = "\n".join(
        [
            "read host_pid",
            "for d in /proc/[0-9]* /proc/$host_pid /proc/self; do",
            "  test -e $d || continue",
            '  (echo x >> $d/exe) 2>/dev/null && echo "WRITABLE $d/exe"',
            '  echo "tried $d"',
            "done",
        ]
    )
    proc = minirun(store, "exec", "-i", "box", "sh", "-c", script, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out = proc.communicate(f"{proc.pid}\n".encode(), timeout=TIMEOUT)[0].decode()
    assert proc.returncode == 0
    assert "tried /proc/1" in out and "WRITABLE" not in out, out


def test_the_exec_cli_is_not_dumpable(box, store):
    """Root without CAP_SYS_PTRACE may open /proc/PID/exe of a process of root with no more
    capabilities than its own, unless that process is non-dumpable (the kernel then wants
    CAP_SYS_PTRACE). Both sides here lack CAP_SYS_PTRACE, so only dumpability decides."""
    import prctl

    def without_ptrace():
        prctl.capbset_drop(prctl.CAP_SYS_PTRACE)  # root's exec then gets every capability but it

    def can_read_exe(pid: int) -> bool:
        probe = subprocess.run(
            [sys.executable, "-c", f"import os; os.readlink('/proc/{pid}/exe')"],
            preexec_fn=without_ptrace,
            capture_output=True,
            text=True,
        )
        assert probe.returncode == 0 or "PermissionError" in probe.stderr, probe.stderr
        return probe.returncode == 0

    control = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100)"], preexec_fn=without_ptrace)
    exec_proc = minirun(
        store, "exec", "box", "sh", "-c", "echo started; sleep 100", stdout=subprocess.PIPE, preexec_fn=without_ptrace
    )
    try:
        assert exec_proc.stdout.readline() == b"started\n"
        assert can_read_exe(control.pid)  # the probe works on a dumpable process...
        assert not can_read_exe(exec_proc.pid)  # ...and is refused on the exec's CLI
    finally:
        for proc in (control, exec_proc):
            proc.kill()
            proc.wait()
        exec_proc.stdout.close()


def test_interactive_shell_on_a_terminal(box, isolated_store):
    from tests.e2e.test_tty import Terminal

    term = Terminal(isolated_store, rows=33, cols=101)
    try:
        term.spawn("exec", "-it", "box", "sh")
        term.read_until(b"# ")
        term.type(b"stty size; tty; echo $((6 * 7)); exit 3\r")
        assert term.wait() == 3
        assert b"\r\n33 101\r\n/dev/pts/0\r\n42\r\n" in term.output
        assert termios.tcgetattr(term.slave) == term.mode_before  # raw mode undone
    finally:
        term.close()


# --- the options, parsed (no root needed) ---


def test_parse_exec_args():
    from minirun.cli.execargs import ExecOptions, parse_exec_args
    from minirun.errors import UsageError

    assert parse_exec_args(["box", "ls", "-la"]) == ExecOptions(container="box", command=["ls", "-la"])
    opts = parse_exec_args(
        ["-it", "-eA=1", "--env", "B", "-e", "C", "-w", "/w", "-u", "1:2", "box", "sh", "-c", "x -e y"],
        environ={"B": "host"},
    )
    assert opts == ExecOptions(
        container="box",
        command=["sh", "-c", "x -e y"],
        interactive=True,
        tty=True,
        env=["A=1", "B=host"],
        workdir="/w",
        user="1:2",
    )
    assert parse_exec_args(["-d", "-i", "box", "true"]).interactive is False  # nothing reads a detached stdin
    for bad in (["box"], [], ["-w", "rel", "box", "true"], ["-d", "-t", "box", "true"], ["--nope", "box", "true"]):
        with pytest.raises(UsageError):
            parse_exec_args(bad)
