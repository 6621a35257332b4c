"""A container's healthcheck as docker records it (Config.Healthcheck: Test ["CMD", ...] |
["CMD-SHELL", cmd] | ["NONE"], Interval, Timeout, StartPeriod, StartInterval in ns, Retries):
from `run`'s --health-* flags merged over the image's HEALTHCHECK, the command a probe runs,
and what `inspect` and `ps` show of the results the monitor records (health.py)."""

from __future__ import annotations

import os

from minirun import leanjson
from minirun.containers.health import HEALTH_FILE, spec_text
from minirun.containers.healthprobe import probe_argv
from minirun.errors import UsageError

TIMINGS = ("Interval", "Timeout", "StartPeriod", "StartInterval")
MINIMUM_NS = 1_000_000  # docker's containertypes.MinimumDuration (1 ms)
_FLAGS = {  # --health-* flag -> docker's field
    "health_interval": "Interval",
    "health_timeout": "Timeout",
    "health_start_period": "StartPeriod",
    "health_start_interval": "StartInterval",
}


def from_flags(cmd: str, timings: dict[str, str | None], retries: int, disabled: bool) -> dict | None:
    """docker's CLI: --no-healthcheck is Test ["NONE"]; any --health-* makes a healthcheck whose
    unset fields the image fills in; None: no flag given. `timings`: flag name -> Go duration."""
    durations = {}
    for flag, text in timings.items():
        if text is None or text == "":
            continue
        from minirun.humanize import parse_go_duration

        option = "--" + flag.replace("_", "-")
        try:
            durations[_FLAGS[flag]] = parse_go_duration(text)
        except UsageError as exc:  # Go's own words, after the flag's, as docker's CLI puts them
            raise UsageError(f'invalid argument "{text}" for "{option}" flag: {exc.message}') from None
        if durations[_FLAGS[flag]] < 0:
            raise UsageError(f"{option} cannot be negative")
    given = bool(cmd or durations or retries)
    if disabled:
        if given:
            raise UsageError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not given:
        return None
    if retries < 0:
        raise UsageError("--health-retries cannot be negative")
    healthcheck: dict = {"Test": ["CMD-SHELL", cmd] if cmd else []}
    healthcheck.update({field: durations.get(field, 0) for field in TIMINGS})
    healthcheck["Retries"] = retries
    return healthcheck


def merged(user: dict | None, image: dict | None) -> dict:
    """docker's merge at create: the image's healthcheck, each field the user set replacing its."""
    base = dict(image) if isinstance(image, dict) else {}
    if not user:
        return base
    result = dict(base)
    for key, value in user.items():
        if value or key not in result:
            result[key] = value
    if not result.get("Test"):
        return {}  # durations without a command, over an image without one: nothing to run
    validate(result)
    return result


def validate(healthcheck: dict) -> None:
    """The daemon's checks (an image's HEALTHCHECK as much as the flags)."""
    for field in TIMINGS:
        value = healthcheck.get(field) or 0
        if not isinstance(value, int) or (value and value < MINIMUM_NS):
            raise UsageError(f"{field} in Healthcheck cannot be less than 1ms")
    retries = healthcheck.get("Retries") or 0
    if not isinstance(retries, int) or retries < 0:
        raise UsageError("Retries in Healthcheck cannot be negative")
    test = healthcheck.get("Test") or []
    if not isinstance(test, list) or not all(isinstance(t, str) for t in test):
        raise UsageError(f"invalid Healthcheck test: {test!r}")


def copier_spec(container) -> str:
    """At each start (the monitor's): State.Health begins again as `starting` with no failures,
    its Log kept, as docker's; the copier's argument for its scheduler, "" for no check."""
    healthcheck = container.config.healthcheck or {}
    if probe_argv(healthcheck) is None:
        return ""
    from minirun.atomicfile import atomic_write

    log = (read_health(container) or {}).get("Log") or []
    entries = [leanjson.dumps(entry) for entry in log if isinstance(entry, dict)]
    document = {"Status": "starting", "FailingStreak": 0, "Log": log}
    try:
        atomic_write(os.path.join(container.dir, HEALTH_FILE), leanjson.dumps(document).encode(), durable=False)
    except OSError:
        pass  # a full disk: the first result rewrites it, the checks run all the same
    timings = tuple(int(healthcheck.get(field) or 0) for field in TIMINGS)
    return spec_text((*timings, int(healthcheck.get("Retries") or 0)), entries)


def read_health(container) -> dict | None:
    """State.Health for inspect, None for a container without a check or never started."""
    if probe_argv(container.config.healthcheck or {}) is None:
        return None
    try:
        with open(os.path.join(container.dir, HEALTH_FILE), "rb") as f:
            health = leanjson.load(f)
    except (OSError, ValueError):
        return None
    return health if isinstance(health, dict) else None


def status_of(container) -> str:
    """`starting`, `healthy`, `unhealthy`, or `none` (ps --filter health=)."""
    health = read_health(container)
    return str(health.get("Status", "none")) if health else "none"
