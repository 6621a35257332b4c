"""Health checks run by a container's monitor: the scheduler that lives in the lean log copier
(logcopier.py), beside its output loop, while PID 1 runs.

At each interval (docker's: the first check one interval after the start; during the start
period the start interval, while the status is `starting`) the copier forks a probe
(healthprobe.py: the heavy exec machinery loads in that child only) whose stdout and stderr
are a pipe the copier reads in its own poll loop, keeping docker's first 4096 bytes; the
probe's exit comes as a pidfd. A probe past its timeout gets SIGALRM (it SIGKILLs the command
it runs in the container), then SIGKILL; its result is docker's -1 "Health check exceeded
timeout". No check runs while the container is paused (its cgroup frozen).

The result goes into `health.json` beside state.json (docker's State.Health: Status, FailingStreak,
Log of the last 5 results), written by hand here: the copier has no json module; a change of
status is a `health_status: <status>` event, recorded by a short-lived grandchild for the same
reason. os, select and time only, so the copier stays about as small as it was.
"""

from __future__ import annotations

import os
import select
import time

HEALTH_FILE = "health.json"
MAX_OUTPUT, MAX_LOG = 4096, 5  # docker's maxOutputLen, maxLogEntries
DEFAULTS = (
    30_000_000_000,
    30_000_000_000,
    0,
    5_000_000_000,
    3,
)  # interval, timeout, start period, start interval (ns), retries
SEPARATOR = "\x1e"  # between the spec's fields and the old log's entries (JSON text never holds it raw)
KILL_GRACE = 2.0  # seconds a probe has to go after SIGALRM
SIGKILL, SIGALRM = 9, 14  # Linux's numbers: the signal module loads enum, ~0.6 MB the copier keeps
_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)} | {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r"}


def spec_text(timings: tuple[int, ...], log_entries: list[str]) -> str:
    """The copier's argument: the timings with docker's defaults in place of zeros, then the
    Log kept from earlier runs (docker keeps it across restarts), each entry as JSON text."""
    return SEPARATOR.join([",".join(str(v or d) for v, d in zip(timings, DEFAULTS)), *log_entries])


def stamp() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def json_string(text: str) -> str:
    return '"' + text.translate(_ESCAPES) + '"'


def next_status(status: str, streak: int, exit_code: int, retries: int, in_start_period: bool) -> tuple[str, int]:
    """docker's handleProbeResult: success is healthy; a failure counts (unless the container is
    still `starting` within its start period) and `retries` of them in a row make it unhealthy."""
    if exit_code == 0:
        return "healthy", 0
    if status == "starting" and in_start_period:
        return status, streak
    streak += 1
    return ("unhealthy" if streak >= retries else status), streak


class Probe:
    """One check in flight: the forked probe, its output pipe and its pidfd."""

    def __init__(self, pid: int, out_fd: int, pidfd: int, deadline: float) -> None:
        self.pid, self.out_fd, self.pidfd, self.deadline = pid, out_fd, pidfd, deadline
        self.started = stamp()
        self.output = b""
        self.truncated = False
        self.alarmed = 0.0  # when SIGALRM went: the timeout passed


class Scheduler:
    """The copier's health checks (see the module's docstring); `ready`/`timeout_ms`/`tick`
    hook into its poll loop, `close` ends a check still in flight once PID 1 is gone."""

    def __init__(self, spec: str, container_dir: str, cgroup_paths: list[str], attributes: str) -> None:
        timings, *self.log = spec.split(SEPARATOR)
        interval, timeout, start_period, start_interval, retries = (int(v) for v in timings.split(","))
        self.interval, self.timeout = interval / 1e9, timeout / 1e9
        self.timeout_ns, self.start_period, self.start_interval = timeout, start_period / 1e9, start_interval / 1e9
        self.retries = retries
        self.container_dir, self.cgroup_paths, self.attributes = container_dir, cgroup_paths, attributes
        self.status, self.streak = "starting", 0
        self.started = time.monotonic()
        self.due = self.started + self._interval()
        self.probe: Probe | None = None
        self.poller: select.poll | None = None

    def _interval(self) -> float:
        """docker's getInterval: the start interval while `starting` within the start period,
        never past the period's end."""
        elapsed = time.monotonic() - self.started
        if elapsed >= self.start_period:
            return self.interval
        remaining = self.start_period - elapsed
        if remaining < self.interval:
            return remaining
        return self.start_interval if self.status == "starting" else self.interval

    def register(self, poller: select.poll) -> None:
        self.poller = poller

    def timeout_ms(self) -> int:
        now = time.monotonic()
        if self.probe is None:
            wake = self.due
        elif self.probe.alarmed:
            wake = self.probe.alarmed + KILL_GRACE
        else:
            wake = self.probe.deadline
        return max(0, int((wake - now) * 1000) + 1)

    def ready(self, fd: int) -> None:
        probe = self.probe
        if probe is None or fd not in (probe.out_fd, probe.pidfd):
            return  # closed already in this round of the loop
        if fd == probe.out_fd:
            self._read(probe)
            return
        try:  # the pidfd: the probe has exited
            _, status = os.waitpid(probe.pid, 0)
        except ChildProcessError:
            status = 0
        self._read(probe, drain=True)
        if probe.alarmed:
            from minirun.humanize import go_duration  # only now: the copier stays lean while checks pass

            message = f"Health check exceeded timeout ({go_duration(self.timeout_ns)})"
            output = probe.output.decode("utf-8", "replace") + ("..." if probe.truncated else "")
            self._finish(probe, -1, f"{message}: {output}" if output else message)
        else:
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
            self._finish(probe, code, probe.output.decode("utf-8", "replace") + ("..." if probe.truncated else ""))

    def _read(self, probe: Probe, drain: bool = False) -> None:
        while True:
            try:
                chunk = os.read(probe.out_fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                if self.poller is not None and not drain:
                    self.poller.unregister(probe.out_fd)  # EOF: the pidfd says when it is over
                return
            keep = MAX_OUTPUT - len(probe.output)
            probe.output += chunk[: max(keep, 0)]
            probe.truncated = probe.truncated or len(chunk) > keep
            if not drain:
                return

    def tick(self) -> None:
        now = time.monotonic()
        probe = self.probe
        if probe is None:
            if now >= self.due:
                if self._frozen():
                    self.due = now + self._interval()
                else:
                    try:
                        self._start()
                    except OSError as exc:  # no fork, no pipe: a failed check, never a dead copier
                        self._record(stamp(), -1, f"the health check could not start: {exc.strerror or exc}")
            return
        if not probe.alarmed and now >= probe.deadline:
            probe.alarmed = now
            _kill(probe.pid, SIGALRM)
        elif probe.alarmed and now >= probe.alarmed + KILL_GRACE:
            _kill(probe.pid, SIGKILL)  # its pidfd turns readable: ready() records the timeout

    def _start(self) -> None:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:  # the probe: never returns
            code = 125
            try:
                os.close(read_fd)
                null = os.open("/dev/null", os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(write_fd, 1)
                os.dup2(write_fd, 2)
                from minirun.linux import close_fds

                close_fds()  # the monitors' server's fds, other containers' among them
                from minirun.containers.healthprobe import run_probe

                code = run_probe(self.container_dir)
            finally:
                os._exit(code)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            _kill(pid, SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_fd)
            raise
        self.probe = Probe(pid, read_fd, pidfd, time.monotonic() + self.timeout)
        if self.poller is not None:
            self.poller.register(read_fd, select.POLLIN)
            self.poller.register(pidfd, select.POLLIN)

    def _finish(self, probe: Probe, exit_code: int, output: str) -> None:
        self._forget(probe)
        self._record(probe.started, exit_code, output)

    def _record(self, started: str, exit_code: int, output: str) -> None:
        in_start_period = time.monotonic() - self.started < self.start_period
        old = self.status
        self.status, self.streak = next_status(old, self.streak, exit_code, self.retries, in_start_period)
        entry = (
            f'{{"Start": "{started}", "End": "{stamp()}", "ExitCode": {exit_code}, "Output": {json_string(output)}}}'
        )
        self.log = [*self.log, entry][-MAX_LOG:]
        self.write()
        if self.status != old:
            self._event()
        self.due = time.monotonic() + self._interval()

    def _forget(self, probe: Probe) -> None:
        for fd in (probe.out_fd, probe.pidfd):
            if self.poller is not None:
                try:
                    self.poller.unregister(fd)
                except KeyError:
                    pass
            os.close(fd)
        self.probe = None

    def write(self) -> None:
        """health.json: docker's State.Health. A disk that refuses it loses this result only."""
        from minirun.atomicfile import atomic_write  # os and errno only

        text = f'{{"Status": "{self.status}", "FailingStreak": {self.streak}, "Log": [{", ".join(self.log)}]}}'
        try:
            atomic_write(os.path.join(self.container_dir, HEALTH_FILE), text.encode(), durable=False)
        except OSError:
            pass

    def _event(self) -> None:
        """`health_status: <status>`, recorded by a grandchild (events.py loads json): the child
        leaves at once, so nothing is left to reap."""
        try:
            child = os.fork()
        except OSError:
            return  # the event is lost, the container goes on
        if child == 0:
            try:
                from minirun.linux import close_fds

                close_fds()  # the monitors' server's fds, other containers' among them
                if os.fork() == 0:
                    from minirun import events, leanjson

                    container_id = os.path.basename(self.container_dir)
                    store_root = os.path.dirname(os.path.dirname(self.container_dir))
                    events.record(
                        store_root,
                        "container",
                        f"health_status: {self.status}",
                        container_id,
                        leanjson.loads(self.attributes),
                    )
            finally:
                os._exit(0)
        os.waitpid(child, 0)

    def _frozen(self) -> bool:
        """A paused container (its cgroup frozen, v1 or v2) is not checked, as in docker."""
        for path in self.cgroup_paths:
            for name, frozen in (("freezer.state", "FROZEN"), ("cgroup.freeze", "1")):
                try:
                    with open(os.path.join(path, name)) as f:
                        if f.read().strip() == frozen:
                            return True
                except OSError:
                    continue
        return False

    def close(self) -> None:
        """PID 1 is gone: a check still in flight ends with it (its command died with the PID
        namespace; the probe is told anyway), unrecorded, as docker stops its checks."""
        probe = self.probe
        if probe is None:
            return
        _kill(probe.pid, SIGKILL)
        try:
            os.waitpid(probe.pid, 0)
        except ChildProcessError:
            pass
        self._forget(probe)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
