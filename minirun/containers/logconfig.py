"""How a detached container's output is kept: docker's --log-driver and --log-opt, the store-wide
defaults in `<store>/daemon.json` (docker's `log-driver` and `log-opts` keys), and what the log
copier needs from them. Pure but for reading daemon.json.

Drivers: `json-file` (docker's format, one JSON object a line), `local` (the same lines, rotated
and compressed by default, as docker's local driver is) and `none` (nothing kept; `logs` refuses).
Unlike docker, whose json-file default grows without bound, every log here is bounded unless the
user says `max-size=-1`: DEFAULT_MAX_SIZE × DEFAULT_MAX_FILE at most.
"""

from __future__ import annotations

import os

from minirun.errors import UsageError

DRIVERS = ("json-file", "local", "none")
DEFAULT_DRIVER = "json-file"
DEFAULT_MAX_SIZE, DEFAULT_MAX_FILE = "20m", "5"  # 100 MB a container at most, by default
_DEFAULTS = {
    "json-file": {"max-size": DEFAULT_MAX_SIZE, "max-file": DEFAULT_MAX_FILE, "compress": "false"},
    "local": {"max-size": DEFAULT_MAX_SIZE, "max-file": DEFAULT_MAX_FILE, "compress": "true"},
    "none": {},
}
_OPTIONS = {
    "json-file": ("max-size", "max-file", "compress"),
    "local": ("max-size", "max-file", "compress"),
    "none": (),
}
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30}
DAEMON_CONFIG = "daemon.json"


def parse_opts(items: list[str]) -> dict[str, str]:
    """--log-opt KEY=VALUE, each."""
    opts = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid log option {item!r}: use KEY=VALUE")
        opts[key] = value
    return opts


def store_defaults(store_root: str) -> tuple[str | None, dict[str, str]]:
    """(log-driver, log-opts) of `<store>/daemon.json`, if it says; a damaged file is an error
    naming it, never silently ignored."""
    from minirun.errors import DamagedRecord
    from minirun.store.fsutil import read_record

    path = os.path.join(store_root, DAEMON_CONFIG)
    try:
        data = read_record(path, 1 << 20)
    except FileNotFoundError:
        return None, {}
    if not isinstance(data, dict):
        raise DamagedRecord(path, "not a JSON object")
    driver, opts = data.get("log-driver"), data.get("log-opts") or {}
    if (
        (driver is not None and not isinstance(driver, str))
        or not isinstance(opts, dict)
        or not all(isinstance(v, str) for v in opts.values())
    ):
        raise DamagedRecord(path, "log-driver must be a string and log-opts a map of strings")
    return driver, dict(opts)


def resolve(driver: str | None, opts: dict[str, str], defaults: tuple[str | None, dict[str, str]]) -> dict:
    """docker's HostConfig.LogConfig for a new container: the flags over the store's defaults
    (whose options count only for their own driver) over the built-in ones; checked."""
    default_driver, default_opts = defaults
    chosen = driver or default_driver or DEFAULT_DRIVER
    if chosen not in DRIVERS:
        raise UsageError(f'logging driver "{chosen}" is not supported (use {", ".join(DRIVERS)})')
    config = dict(_DEFAULTS[chosen])
    if chosen == (default_driver or DEFAULT_DRIVER):
        config.update(default_opts)
    config.update(opts)
    for key in config:
        if key not in _OPTIONS[chosen]:
            raise UsageError(f"unknown log opt '{key}' for {chosen} log driver")
    limits({"Type": chosen, "Config": config})  # checks the values
    return {"Type": chosen, "Config": config}


def parse_size(text: str) -> int:
    """docker's sizes: `10m`, `1g`, `512k`, `100`; -1 means unlimited (returned as 0)."""
    if text.strip() == "-1":
        return 0
    number = text.strip().lower()
    digits = number.rstrip("bkmg")
    unit = number[len(digits) :]
    if not digits.isdigit() or not digits.isascii() or unit not in _UNITS or int(digits) == 0:
        raise UsageError(f"invalid log size: {text!r}")
    return int(digits) * _UNITS[unit]


def limits(log_config: dict) -> tuple[int, int, bool]:
    """(max size in bytes, 0: unbounded; how many files; compress rotated ones) of a LogConfig."""
    config = log_config.get("Config") or {}
    if log_config.get("Type") == "none":
        return 0, 1, False
    max_size = parse_size(config.get("max-size", "-1"))
    text = config.get("max-file", "1")
    if not text.isdigit() or not text.isascii() or int(text) < 1:
        raise UsageError("max-file cannot be less than 1")
    max_file = int(text)
    if max_file > 1 and not max_size:
        raise UsageError("max-file cannot be greater than 1 when max-size is not set")
    compress = config.get("compress", "false")
    if compress not in ("true", "false", "1", "0"):
        raise UsageError(f"invalid value for compress: {compress!r}")
    return max_size, max_file, compress in ("true", "1") and max_file > 1
