"""Sizes, durations and timestamps formatted exactly as docker's go-units and CLI print them, and
the times its --since/--until options take."""

from __future__ import annotations

import time

from minirun.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
# datetime is imported where it is used: its module is ~1.5 ms of every start that imports this
# one (run, ps), and records' own timestamps are read and written without it.

_DECIMAL_UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
_BINARY_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
# Patterns, not compiled ones: `re` and the compiling cost ~4 ms of every start that imports humanize
# (run, ps); a function compiles its own on first use (re caches it).
_RFC3339_RE = r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"


def human_size(n: float, precision: int = 3) -> str:
    """go-units HumanSizeWithPrecision: decimal units, `%.*g`, no space (`1.98MB`)."""
    return _custom_size(n, 1000, _DECIMAL_UNITS, precision)


def bytes_size(n: float) -> str:
    """go-units BytesSize: binary units, `%.4g` (`23.43GiB`), as docker info's Total Memory."""
    return _custom_size(n, 1024, _BINARY_UNITS, 4)


def _custom_size(n: float, base: int, units: list[str], precision: int) -> str:
    """go-units CustomSize. Python's %g and Go's %g agree here: same rounding (half-even on the
    exact binary value), trailing zeros dropped, exponent of at least two digits (999999 ->
    1e+03kB)."""
    size = float(n)
    unit = 0
    while size >= base and unit < len(units) - 1:
        size /= base
        unit += 1
    return f"{size:.{precision}g}{units[unit]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration, with its truncations and its one rounding (hours)."""
    whole_seconds = int(seconds)
    if whole_seconds < 1:
        return "Less than a second"
    if whole_seconds == 1:
        return "1 second"
    if whole_seconds < 60:
        return f"{whole_seconds} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    # Only hours round to nearest; days, weeks and months are then whole hours divided down.
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{int(seconds / 3600) // (24 * 365)} years"


def parse_rfc3339(text: str) -> datetime:
    """An aware datetime from RFC 3339 text with up to nanoseconds (digits past micro dropped)."""
    if _is_rfc3339_ns(text):  # rfc3339_ns's own form, what every record holds: no regex needed
        iso = f"{text[:26]}+00:00"
    else:
        import re

        match = re.fullmatch(_RFC3339_RE, text.strip())
        if match is None:
            raise UsageError(f"invalid timestamp: {text!r}")
        day, clock, fraction, offset = match.groups()
        # fromisoformat in 3.11 takes at most 6 fraction digits; Go writes up to 9.
        micro = f".{(fraction or '')[:6]:0<6}"
        offset = "+00:00" if offset in ("Z", "z") else offset
        iso = f"{day}T{clock}{micro}{offset}"
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        raise UsageError(f"invalid timestamp: {text!r}") from None


def epoch_seconds(text: str) -> float:
    """parse_rfc3339(text).timestamp(), to the bit; rfc3339_ns's form without datetime (ps reads
    two a container: a date's day number is worked out once, the clock in one int())."""
    if len(text) == 30 and text.isascii() and text[10] + text[13] + text[16] + text[19] + text[29] == "T::.Z":
        days = _day_number(text[:10])
        clock = text[11:13] + text[14:16] + text[17:19] + text[20:26]  # hhmmssuuuuuu
        if days is not None and clock.isdigit() and text[26:29].isdigit():
            rest, micro = divmod(int(clock), 1_000_000)
            hours_minutes, second = divmod(rest, 100)
            hour, minute = divmod(hours_minutes, 100)
            if hour < 24 and minute < 60 and second < 60:
                whole = days * 86400 + hour * 3600 + minute * 60 + second
                return (whole * 1_000_000 + micro) / 1_000_000  # timedelta.total_seconds' rounding
    return parse_rfc3339(text).timestamp()  # the general form, and datetime's error for a time that is none


_DAY_NUMBERS: dict[str, int | None] = {}


def _day_number(date: str) -> int | None:
    """Days from 1970-01-01 to `YYYY-MM-DD`; None for text that is no such day."""
    if date not in _DAY_NUMBERS:
        days = None
        if date[4] + date[7] == "--" and (date[:4] + date[5:7] + date[8:]).isdigit():
            year, month, day = int(date[:4]), int(date[5:7]), int(date[8:])
            if year >= 1 and 1 <= month <= 12 and 1 <= day <= _days_in_month(year, month):
                days = _days_since_epoch(year, month, day)
        _DAY_NUMBERS[date] = days
    return _DAY_NUMBERS[date]


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_since_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 in the proleptic Gregorian calendar (datetime's), counting years from
    March so that February's leap day falls last (H. Hinnant's days_from_civil)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _is_rfc3339_ns(text: str) -> bool:
    """`2026-11-28T20:37:38.123456789Z` exactly (ASCII digits where digits go): what _RFC3339_RE
    would take apart into these very slices."""
    return (
        len(text) == 30
        and text.isascii()
        and text[4] + text[7] + text[10] + text[13] + text[16] + text[19] + text[29] == "--T::.Z"
        and (text[:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19] + text[20:29]).isdigit()
    )


_GO_DURATION_PART = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)"
_GO_DURATION_RE = r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+"
_DURATION_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DATE_RE = r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?)?([Zz]|[+-]\d{2}:\d{2})?"


def parse_timestamp(text: str, now_ns: int | None = None) -> int:
    """A time in ns since the epoch from what docker's --since/--until take: a Go duration back
    from now (`42m`, `1h30m`), Unix seconds[.nanoseconds], or a date: RFC 3339 (with nanoseconds),
    `2006-01-02T15:04:05[.999999999]`, `2006-01-02Z07:00` or `2006-01-02`, local time when it
    names no zone (docker's GetTimestamp)."""
    import re

    value = text.strip()
    now_ns = time.time_ns() if now_ns is None else now_ns
    unsigned = value.lstrip("+-")
    if unsigned and re.fullmatch(_GO_DURATION_RE, unsigned):
        seconds = sum(float(n) * _DURATION_SECONDS[unit] for n, unit in re.findall(_GO_DURATION_PART, unsigned))
        ago = round(seconds * 1e9)
        return now_ns + ago if value.startswith("-") else now_ns - ago
    if re.fullmatch(r"\d+(\.\d{1,9})?", value):
        whole, _, fraction = value.partition(".")
        return int(whole) * 1_000_000_000 + int(fraction.ljust(9, "0") or 0)
    match = re.fullmatch(_DATE_RE, value)
    if match is None:
        raise UsageError(f"invalid time {text!r}: a date (RFC 3339), Unix seconds or a duration like 42m")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    fields = (int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    try:
        from datetime import datetime

        datetime(*fields)  # a real day and time
    except ValueError:
        raise UsageError(f"invalid time {text!r}: no such date") from None
    nanos = int((fraction or "").ljust(9, "0") or 0)
    if zone is None:  # the client's local time, as docker reads it
        epoch = int(time.mktime((*fields, 0, 0, -1)))
    else:
        import calendar  # here, not at the top: humanize is on run's path, --since is not

        epoch = calendar.timegm((*fields, 0, 0, 0))
        if zone not in ("Z", "z"):
            sign = 1 if zone[0] == "+" else -1
            epoch -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return epoch * 1_000_000_000 + nanos


def time_ago(created: datetime | str, now: datetime | None = None) -> str:
    """`2 hours ago`, as docker's CREATED columns say it. Naive datetimes are taken as UTC."""
    if isinstance(created, str) and now is None:
        return human_duration(time.time() - epoch_seconds(created)) + " ago"
    from datetime import UTC, datetime

    when = parse_rfc3339(created) if isinstance(created, str) else created
    now = now or datetime.now(UTC)
    return human_duration((_as_utc(now) - _as_utc(when)).total_seconds()) + " ago"


def image_age(created: object) -> str:
    """time_ago for a date from an image config, which came from outside: docker shows `N/A`
    for one it cannot read rather than failing the whole listing."""
    if not isinstance(created, str) or not created:
        return "N/A"
    try:
        return time_ago(created)
    except UsageError:
        return "N/A"


def ellipsis(text: str, max_len: int) -> str:
    """docker CLI's formatter.Ellipsis: fit `max_len` columns (East Asian wide characters
    take two), ending in `…` when cut."""
    if max_len <= 0:
        return ""
    if max_len == 1:
        return text[:1]
    if display_width(text) <= max_len:
        return text
    kept, used = 0, 0
    while used + _width(text[kept]) <= max_len - 1:
        used += _width(text[kept])
        kept += 1
    # Docker returns the text uncut when not even its first character fits.
    return text[:kept] + "…" if kept else text


def display_width(text: str) -> int:
    """Columns `text` takes on a terminal: East Asian wide characters two, combining marks none."""
    if text.isascii():  # one column each (ps's tables are mostly ASCII: the per-character look-up costs)
        return len(text)
    return sum(_width(ch) for ch in text)


def _width(ch: str) -> int:
    import unicodedata  # here: only text that is not ASCII needs it

    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _as_utc(value: datetime) -> datetime:
    from datetime import UTC

    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


_DURATION_NS = {
    "ns": 1,
    "us": 1000,
    "µs": 1000,
    "μs": 1000,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_GO_DURATION_TOKEN = r"(\d*)(?:\.(\d*))?([^\d.]*)"
_MAX_DURATION = (1 << 63) - 1


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds: `1h30m`, `1.5s`, `-5ms`, `0`; its error text."""
    import re

    token = re.compile(_GO_DURATION_TOKEN)
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0
    if not body:
        raise UsageError(f'time: invalid duration "{text}"')
    total = 0
    pos = 0
    while pos < len(body):
        match = token.match(body, pos)
        assert match is not None  # every part is optional: it always matches
        whole, fraction, unit = match.groups()
        if not whole and not fraction:
            raise UsageError(f'time: invalid duration "{text}"')
        if not unit:
            raise UsageError(f'time: missing unit in duration "{text}"')
        if unit not in _DURATION_NS:
            raise UsageError(f'time: unknown unit "{unit}" in duration "{text}"')
        scale = _DURATION_NS[unit]
        total += int(whole or 0) * scale + (int(fraction) * scale // 10 ** len(fraction) if fraction else 0)
        if total > _MAX_DURATION:
            raise UsageError(f'time: invalid duration "{text}"')
        pos = match.end()
    return -total if text.startswith("-") else total


def go_duration(ns: int) -> str:
    """Go's Duration.String: `0s`, `1.5s`, `5m0s`, `1h0m0s`, `100ms`, `2µs`."""
    sign, u = ("-", -ns) if ns < 0 else ("", ns)
    if u == 0:
        return "0s"
    if u < 1000:
        return f"{sign}{u}ns"
    if u < 10**6:
        return f"{sign}{_go_fraction(u, 3)}µs"
    if u < 10**9:
        return f"{sign}{_go_fraction(u, 6)}ms"
    seconds = _go_fraction(u % (60 * 10**9), 9) + "s"
    minutes, hours = (u // (60 * 10**9)) % 60, u // (3600 * 10**9)
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    return f"{sign}{minutes}m{seconds}" if minutes else sign + seconds


def _go_fraction(value: int, digits: int) -> str:
    whole, fraction = divmod(value, 10**digits)
    text = str(fraction).rjust(digits, "0").rstrip("0")
    return f"{whole}.{text}" if text else str(whole)
