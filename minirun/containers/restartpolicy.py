"""Restart policies (docker's `--restart no|on-failure[:N]|always|unless-stopped`), carried out
by a container's monitor since there is no daemon.

When PID 1 exits, the log copier (logcopier.py) asks `after_exit` whether the policy restarts
it; if so the state says `restarting` (RestartCount one up) and, once docker's back-off has
passed (100 ms, doubling at each restart up to a minute, back to 100 ms after a run of 10 s or
more), `relaunch` tells monitor.py to start PID 1 again: same process, same log file (appended
to), same record.

What the user did is told to the monitor through a small file in the container's dir, the
*request* (docker's HasBeenManuallyStopped and its restart manager's cancel): `stop`, and
`kill` with SIGKILL or the stop signal, write STOP (no restart, and `unless-stopped` stays
down across a boot); `kill` with another signal writes SIGNAL (the user stopped it, yet
`always` and `on-failure` still restart it, as in docker); `restart` writes RESTART (the verb
starts it itself, and an --rm container is kept for it); `system shutdown` writes SHUTDOWN (no
restart now, but `system boot` starts it again). A start by the user clears it.

Imports only os and time at the top: the copier loads it after PID 1's exit, the monitor
before the start; json is loaded where a record is read.
"""

from __future__ import annotations

import os
import time

POLICIES = ("no", "always", "unless-stopped", "on-failure")
FIRST_DELAY_MS, MAX_DELAY_MS = 100, 60_000  # docker's restart manager
RESET_AFTER_SECONDS = 10  # a run this long starts the back-off again from FIRST_DELAY_MS
REQUEST_PREFIX = "stop-request."
STOP, SIGNAL, RESTART, SHUTDOWN = "stop", "signal", "restart", "shutdown"
_POLL = 0.05
NEVER = "0001-01-01T00:00:00Z"


def parse_policy(text: str) -> dict:
    """`--restart` as docker reads it: {"Name": ..., "MaximumRetryCount": N}; UsageError else."""
    from minirun.errors import UsageError

    name, colon, count_text = text.partition(":")
    if colon and not name:
        raise UsageError("invalid restart policy format: no policy provided before colon")
    count = 0
    if count_text:
        try:
            count = int(count_text)
        except ValueError:
            raise UsageError("invalid restart policy format: maximum retry count must be an integer") from None
    if name not in POLICIES:
        raise UsageError(
            f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        )
    if name != "on-failure" and count:
        message = "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        raise UsageError(message + (" and cannot be negative" if count < 0 else ""))
    if count < 0:
        raise UsageError("invalid restart policy: maximum retry count cannot be negative")
    return {"Name": name, "MaximumRetryCount": count}


def policy_of(config_data: dict) -> dict:
    """A config's policy, docker's default (`no`) for one recorded without."""
    policy = config_data.get("restart_policy") or {}
    return {"Name": policy.get("Name") or "no", "MaximumRetryCount": policy.get("MaximumRetryCount") or 0}


def next_delay(policy: dict, exit_code: int, restart_count: int, delay_ms: int, ran_seconds: float, request) -> int:
    """docker's ShouldRestart: the back-off (ms) before the restart, or 0 for no restart.
    `delay_ms`: the previous back-off (0 at first); `request`: what the user asked (see above)."""
    name = policy.get("Name") or "no"
    if name == "no" or request in (STOP, RESTART, SHUTDOWN):
        return 0
    if ran_seconds >= RESET_AFTER_SECONDS:
        delay_ms = 0
    delay_ms = FIRST_DELAY_MS if delay_ms <= 0 else min(delay_ms * 2, MAX_DELAY_MS)
    if name == "always":
        return delay_ms
    if name == "unless-stopped":
        return delay_ms if request is None else 0
    limit = policy.get("MaximumRetryCount") or 0
    return delay_ms if exit_code != 0 and (limit == 0 or restart_count < limit) else 0


def starts_at_boot(policy: dict, request, state: dict) -> bool:
    """`system boot`, as dockerd's start: `always` ones (even stopped by the user), and
    `unless-stopped` ones the user did not stop; only those started before."""
    if state.get("StartedAt", NEVER) == NEVER:
        return False
    name = policy.get("Name")
    return name == "always" or (name == "unless-stopped" and request not in (STOP, SIGNAL))


# -- the user's requests ---------------------------------------------------------------------------


def read_request(container_dir: str) -> str | None:
    """The user's last word on the container (an empty file `stop-request.<word>`), if any."""
    try:
        names = os.listdir(container_dir)
    except OSError:
        return None
    found = {name[len(REQUEST_PREFIX) :] for name in names if name.startswith(REQUEST_PREFIX)}
    return next((word for word in (RESTART, SHUTDOWN, STOP, SIGNAL) if word in found), None)


def write_request(container_dir: str, request: str) -> None:
    """Before the signal that ends PID 1, so the monitor reads it when it sees the exit; a
    weaker request (SIGNAL) never replaces a stronger one. The word is the file's name, the file
    empty: it takes no data block, so `stop` on a full disk still keeps the policy off."""
    if request == SIGNAL and read_request(container_dir) is not None:
        return
    try:
        os.close(os.open(os.path.join(container_dir, REQUEST_PREFIX + request), os.O_WRONLY | os.O_CREAT, 0o600))
    except FileNotFoundError:
        return  # removed meanwhile (an --rm container's monitor): nothing left to restart
    _remove_requests(container_dir, keep=request)


def clear_request(container_dir: str) -> None:
    _remove_requests(container_dir, keep=None)


def _remove_requests(container_dir: str, keep: str | None) -> None:
    for word in (STOP, SIGNAL, RESTART, SHUTDOWN):
        if word != keep:
            try:
                os.unlink(os.path.join(container_dir, REQUEST_PREFIX + word))
            except FileNotFoundError:
                pass


def keeps_record(container_dir: str) -> bool:
    """An --rm container stopped by `restart` is started again, not removed (docker >= 25)."""
    return read_request(container_dir) == RESTART


# -- the monitor's side ----------------------------------------------------------------------------


def after_exit(container_dir: str, state_text: str, exit_code: int, ran_seconds: float) -> str:
    """The copier's exit record (JSON text), turned into a `restarting` one when the policy (read
    now from config.json: `update --restart` may have changed it) restarts the container."""
    from minirun import leanjson

    try:
        with open(os.path.join(container_dir, "config.json"), "rb") as f:
            policy = policy_of(leanjson.load(f))
        state = leanjson.loads(state_text)
    except (OSError, ValueError, AttributeError):
        return state_text  # an unreadable config restarts nothing
    count = state.get("RestartCount") or 0
    delay = next_delay(
        policy, exit_code, count, state.get("RestartBackoffMs") or 0, ran_seconds, read_request(container_dir)
    )
    if not delay:
        return state_text
    state.update(Status="restarting", RestartCount=count + 1, RestartBackoffMs=delay)
    return leanjson.dumps(state)


def wait_backoff(container_dir: str, delay_ms: int) -> bool:
    """Sleep the back-off; False as soon as the user asked for the container to stay down."""
    deadline = time.monotonic() + delay_ms / 1000
    while True:
        if read_request(container_dir) in (STOP, RESTART, SHUTDOWN):
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, _POLL))


def relaunch(container_dir: str) -> bool:
    """The copier's last step: True if its exit record says `restarting` and the back-off went by
    (the monitor then starts PID 1 again); a back-off cut short records the exit."""
    from minirun import leanjson

    state_path = os.path.join(container_dir, "state.json")
    try:
        with open(state_path, "rb") as f:
            state = leanjson.load(f)
    except (OSError, ValueError):
        return False
    if state.get("Status") != "restarting":
        return False
    if not wait_backoff(container_dir, state.get("RestartBackoffMs") or 0):
        stay_down(state_path, state)
        return False
    return True


def restart_argv(store_root: str, container_id: str) -> list[str]:
    """monitor.main's argv for a restart of the policy's: nobody to report to, no attach client."""
    return [store_root, container_id, "-1", "-1", "0", "0", "restart", "0"]  # 0 0: the container's size


def stay_down(state_path: str, state: dict, error: str = "") -> None:
    """A restart that will not happen: the last exit stands (docker's SetStopped)."""
    from minirun import leanjson
    from minirun.atomicfile import atomic_write

    state.update(Status="exited", Running=False, Pid=0)
    if error:
        state["Error"] = error
    try:
        atomic_write(state_path, leanjson.dumps(state).encode(), durable=False)
    except OSError:
        pass  # removed meanwhile (rm -f)


def restart_args(extra: list[str]) -> int | None:
    """monitor.py's arguments after the attach ones (detach.spawn_monitor): None for a start, else the back-off (ms)
    still to wait before this restart."""
    if len(extra) == 2 and extra[0] == "restart":
        return int(extra[1])
    return None


def claim(containers, container, pid: int) -> None:
    """The monitor of a restart: the process that records the container's exit is `pid` from
    now on (a handed-over foreground container's was the client's)."""
    from minirun.procs import start_time

    containers.update_state(
        container, MonitorPid=pid, MonitorStartTime=start_time(pid), GuardPid=0, GuardStartTime=None
    )


def backoff_or_stay_down(container, delay_ms: int) -> bool:
    """The rest of the back-off; False (recorded) if the user stopped the container meanwhile."""
    if wait_backoff(container.dir, delay_ms):
        return True
    stay_down(os.path.join(container.dir, "state.json"), dict(container.state))
    return False


def relaunch_failed(containers, container, message: str) -> None:
    """The restart's start failed: the container stays exited, with the reason (docker's too)."""
    stay_down(os.path.join(container.dir, "state.json"), dict(container.state), message)


def user_started(containers, container) -> None:
    """`start`, `restart`, `system boot`: the user's word again; the count starts anew (docker
    resets its restart manager and RestartCount on a start)."""
    clear_request(container.dir)
    if container.state.get("RestartCount") or container.state.get("RestartBackoffMs"):
        containers.update_state(container, RestartCount=0, RestartBackoffMs=0)


def hand_over(store_root: str, containers, container, exit_code: int) -> None:
    """Foreground `run --restart`: the client returns at the first exit, as docker's does, and
    a monitor takes the container over for the restarts the policy asks for (docker's daemon
    restarts it in the background too). Returns once the monitor has claimed it."""
    from minirun.containers.detach import spawn_monitor
    from minirun.errors import MinirunError
    from minirun.humanize import parse_rfc3339

    state = container.state
    try:
        ran = time.time() - parse_rfc3339(state.get("StartedAt", NEVER)).timestamp()
    except ValueError:
        ran = 0.0
    count = state.get("RestartCount") or 0
    policy = policy_of(container.config.to_json())
    delay = next_delay(policy, exit_code, count, state.get("RestartBackoffMs") or 0, ran, read_request(container.dir))
    if not delay:
        return
    containers.update_state(container, Status="restarting", RestartCount=count + 1, RestartBackoffMs=delay)
    try:
        spawn_monitor(store_root, container.id, extra=("restart", str(delay)))
    except MinirunError as exc:
        relaunch_failed(containers, container, exc.message)
        raise MinirunError(f"the container exited and could not be restarted: {exc.message}") from None
