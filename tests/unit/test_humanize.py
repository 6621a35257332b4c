"""Sizes and durations print as docker's go-units prints them; timestamps as docker writes them."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import pytest

from minirun.errors import UsageError
from minirun.humanize import (
    display_width,
    ellipsis,
    epoch_seconds,
    human_duration,
    human_size,
    image_age,
    parse_rfc3339,
    parse_timestamp,
    time_ago,
)
from minirun.timestamps import rfc3339_now, rfc3339_ns

MINUTE, HOUR, DAY = 60, 3600, 86400
WEEK, MONTH, YEAR = 7 * DAY, 30 * DAY, 365 * DAY


@pytest.mark.parametrize(
    "n, text",
    [
        (0, "0B"),
        (3, "3B"),
        (999, "999B"),
        (1000, "1kB"),
        (1024, "1.02kB"),
        (12345, "12.3kB"),
        (1982256, "1.98MB"),
        # %g switches to an exponent when rounding reaches the next power of ten.
        (999999, "1e+03kB"),
        (999499, "999kB"),
        # Ties round half-to-even on the exact binary value, as Go does: 1.125 -> 1.12.
        (1125, "1.12kB"),
        (3.42e9, "3.42GB"),
        (1e24, "1YB"),
        (1e30, "1e+06YB"),
    ],
)
def test_human_size(n: float, text: str) -> None:
    assert human_size(n) == text


@pytest.mark.parametrize(
    "n, text",
    # go-units' own HumanSize (precision 4) examples.
    [(1000, "1kB"), (1024, "1.024kB"), (1048576, "1.049MB"), (2e6, "2MB"), (5.372e12, "5.372TB"), (1e28, "1e+04YB")],
)
def test_human_size_precision_4(n: float, text: str) -> None:
    assert human_size(n, 4) == text


@pytest.mark.parametrize(
    "seconds, text",
    # go-units' duration_test.go table.
    [
        (0.45, "Less than a second"),
        (1, "1 second"),
        (45, "45 seconds"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (3 * MINUTE, "3 minutes"),
        (35 * MINUTE + 40, "35 minutes"),
        (59 * MINUTE, "59 minutes"),
        (HOUR, "About an hour"),
        (HOUR + 29 * MINUTE, "About an hour"),
        (HOUR + 31 * MINUTE, "2 hours"),
        (3 * HOUR + 29 * MINUTE, "3 hours"),
        (3 * HOUR + 31 * MINUTE, "4 hours"),
        (DAY, "24 hours"),
        (DAY + 12 * HOUR, "36 hours"),
        (2 * DAY, "2 days"),
        (13 * DAY + 5 * HOUR, "13 days"),
        (2 * WEEK, "2 weeks"),
        (2 * WEEK + 4 * DAY, "2 weeks"),
        (MONTH, "4 weeks"),
        (MONTH + 2 * WEEK, "6 weeks"),
        (2 * MONTH, "2 months"),
        (5 * MONTH + 2 * WEEK, "5 months"),
        (24 * MONTH, "24 months"),
        (24 * MONTH + 2 * WEEK, "2 years"),
        (3 * YEAR + 2 * MONTH, "3 years"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_negative_duration_is_less_than_a_second() -> None:
    # A clock skewed into the future must not print "-5 seconds".
    assert human_duration(-5) == "Less than a second"


NOW = datetime(2026, 11, 28, 20, 37, 38, tzinfo=UTC)


@pytest.mark.parametrize(
    "created, text",
    [
        ("2026-11-28T20:37:00Z", "38 seconds ago"),
        # Nine fraction digits, which datetime.fromisoformat rejects in 3.11.
        ("2026-11-28T18:37:38.123456789Z", "2 hours ago"),
        ("2026-11-28T21:37:38+01:00", "Less than a second ago"),
        ("2026-11-28T14:30:00.5-05:00", "About an hour ago"),
        (NOW - timedelta(days=3), "3 days ago"),
        # A naive datetime is taken as UTC.
        (datetime(2026, 11, 28, 20, 30, 38), "7 minutes ago"),
    ],
)
def test_time_ago(created: datetime | str, text: str) -> None:
    assert time_ago(created, now=NOW) == text


def test_parse_rfc3339_keeps_microseconds_and_offset() -> None:
    parsed = parse_rfc3339("2026-11-28T20:37:38.123456789+02:00")
    assert parsed == datetime(2026, 11, 28, 18, 37, 38, 123456, tzinfo=UTC)
    assert parse_rfc3339("2026-11-28T20:37:38Z").tzinfo is not None


@pytest.mark.parametrize("text", ["yesterday", "2026-11-28", "2026-11-28T20:37:38", "2026-13-28T20:37:38Z"])
def test_parse_rfc3339_rejects_bad_text(text: str) -> None:
    with pytest.raises(UsageError, match="invalid timestamp"):
        parse_rfc3339(text)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-28T20:37:38.123456789Z",
        "1970-01-01T00:00:00.000000000Z",
        "2026-12-31T23:59:59.999999999Z",
        "2026-13-28T20:37:38.123456789Z",  # no 13th month: an error either way
        "2026-02-30T20:37:38.123456789Z",
        "2026-11-28T24:00:00.000000000Z",
        "２026-11-28T20:37:38.123456789Z",  # a fullwidth digit: the pattern's \d takes it, the quick path does not
    ],
)
def test_parse_rfc3339_reads_records_own_form_as_the_general_pattern_does(text: str) -> None:
    """Records hold rfc3339_ns's fixed form, read without a regex; `t` for `T` (or a space around)
    takes the general path, which must give the same."""

    def reading(value: str) -> object:
        try:
            return parse_rfc3339(value)
        except UsageError as exc:
            return exc.message.replace(repr(value), "TEXT")

    assert reading(text) == reading(text.replace("T", "t")) == reading(f" {text}")


def test_epoch_seconds_of_records_own_form_are_datetimes_to_the_bit() -> None:
    """Read without datetime: the same float as parse_rfc3339(...).timestamp(), the same error
    for a day that does not exist, across the calendar (leap years, centuries, before 1970)."""
    rng = random.Random(16)
    stamps = [rfc3339_ns(rng.randrange(-(2**61), 2**62)) for _ in range(20000)]
    stamps += [f"{y:04d}-02-{d:02d}T23:59:59.999999999Z" for y in (1, 1900, 1970, 2000, 2023, 2024) for d in (28, 29)]
    stamps += ["2024-02-30T00:00:00.000000000Z", "2024-04-31T00:00:00.000000000Z", "2024-13-01T00:00:00.000000000Z"]
    stamps += ["0000-01-01T00:00:00.000000000Z", "2024-01-01T24:00:00.000000000Z", "2024-01-01T00:00:60.000000000Z"]
    stamps += ["2024-0a-01T00:00:00.000000000Z", "2024-01-01T0a:00:00.000000000Z", "2024-01-01T00:00:00.00000000aZ"]
    stamps += ["2024-01-01t00:00:00.000000000Z", "2024-01-01T00:00:00,000000000Z", "2024-01-01T00:00:00.000000000z"]
    stamps += ["2026-11-28T20:37:38Z", "2026-11-28T20:37:38.5+02:00"]  # other forms: datetime's way

    def both(text: str) -> tuple[object, object]:
        try:
            general: object = parse_rfc3339(text).timestamp()
        except UsageError as exc:
            general = exc.message
        try:
            return epoch_seconds(text), general
        except UsageError as exc:
            return exc.message, general

    for text in stamps:
        mine, general = both(text)
        assert mine == general, text


def test_rfc3339_ns_writes_what_datetime_would() -> None:
    rng = random.Random(17)
    for ns in [0, -1, 10**18, *(rng.randrange(-(2**61), 2**62) for _ in range(5000))]:
        stamp = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
        assert rfc3339_ns(ns) == f"{stamp:%Y-%m-%dT%H:%M:%S}.{ns % 1_000_000_000:09d}Z"


def test_display_width_of_ascii_is_its_length_as_the_tables_say() -> None:
    import unicodedata

    for code in range(128):
        ch = chr(code)
        by_table = 0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        assert display_width(ch * 3) == 3 * by_table
    assert display_width("日本") == 4 and display_width("e\u0301") == 1


def test_rfc3339_now_is_utc_with_nanoseconds() -> None:
    stamp = rfc3339_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", stamp)
    assert abs(parse_rfc3339(stamp) - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize(
    "text, max_len, shown",
    [
        ("hello", 5, "hello"),
        ("hello world", 5, "hell…"),
        ("hello", 1, "h"),
        ("hello", 0, ""),
        ("", 3, ""),
        # Wide characters take two columns.
        ("日本語テキスト", 6, "日本…"),
        ("日本", 4, "日本"),
        # docker leaves the text whole when not even the first character fits.
        ("日本語", 2, "日本語"),
    ],
)
def test_ellipsis(text: str, max_len: int, shown: str) -> None:
    assert ellipsis(text, max_len) == shown


@pytest.mark.parametrize("created", ["", None, 5, "yesterday", ["2020-01-01T00:00:00Z"]])
def test_an_unreadable_image_date_is_na_not_an_error(created) -> None:
    """Configs come from outside (load, pull): one bad date must not break `images` or `history`."""
    assert image_age(created) == "N/A"


def test_a_readable_image_date_is_an_age() -> None:
    assert image_age(rfc3339_now()) == "Less than a second ago"


NOW_NS = 1_700_000_000 * 10**9  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize(
    "text, expected",
    [
        ("42m", "2023-11-14T21:31:20.000000000Z"),  # a Go duration back from now
        ("1h30m", "2023-11-14T20:43:20.000000000Z"),
        ("1.5h", "2023-11-14T20:43:20.000000000Z"),
        ("300ms", "2023-11-14T22:13:19.700000000Z"),
        ("-10m", "2023-11-14T22:23:20.000000000Z"),  # a negative duration is ahead of now
        ("1700000000", "2023-11-14T22:13:20.000000000Z"),  # Unix seconds
        ("1700000000.5", "2023-11-14T22:13:20.500000000Z"),
        ("2013-01-02T13:23:37Z", "2013-01-02T13:23:37.000000000Z"),
        ("2013-01-02T13:23:37.123456789+01:00", "2013-01-02T12:23:37.123456789Z"),
        ("2013-01-02Z", "2013-01-02T00:00:00.000000000Z"),
        ("2013-01-02+01:00", "2013-01-01T23:00:00.000000000Z"),
    ],
)
def test_docker_timestamps(text: str, expected: str) -> None:
    assert rfc3339_ns(parse_timestamp(text, NOW_NS)) == expected


def test_a_date_without_a_zone_is_local_time(monkeypatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        assert rfc3339_ns(parse_timestamp("2013-01-02T13:23:37", NOW_NS)) == "2013-01-02T12:23:37.000000000Z"
        assert rfc3339_ns(parse_timestamp("2013-01-02", NOW_NS)) == "2013-01-01T23:00:00.000000000Z"
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("text", ["", "x", "10q", "2013-02-30", "2013-1-2", "1h 30m"])
def test_bad_timestamps_are_one_line_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_timestamp(text, NOW_NS)
    assert "\n" not in err.value.message and repr(text) in err.value.message
