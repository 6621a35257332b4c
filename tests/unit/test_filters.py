"""docker's --filter rules, without containers: parsing, matching, labels, ports, references."""

from __future__ import annotations

import pytest

from minirun.errors import UsageError
from minirun.frontend.filters import IMAGE_KEYS, PS_KEYS, Filters, _port_range, _reference_matches


def test_values_of_one_key_are_alternatives_and_patterns():
    f = Filters(["name=web", "name=^db$", "Id = abc"], PS_KEYS)
    assert f.get("id") == ["abc"]  # docker trims and lowercases the key, trims the value
    assert f.match("name", "/myweb") and f.match("name", "db") and not f.match("name", "/db")
    assert f.match("status", "anything")  # a key not given holds
    assert Filters(["name=[bad"], PS_KEYS).match("name", "[bad")  # equal, though no pattern


def test_every_label_must_hold():
    f = Filters(["label=a", "label=b=2"], PS_KEYS)
    assert f.match_labels({"a": "", "b": "2"})
    assert not f.match_labels({"a": "x"}) and not f.match_labels({"a": "", "b": "3"})


@pytest.mark.parametrize(
    "items, keys, message",
    [
        (["color=red"], PS_KEYS, "invalid filter 'color'"),
        (["name"], PS_KEYS, "bad format of filter 'name' (expected name=value)"),
        (["status=red"], IMAGE_KEYS, "invalid filter 'status'"),
    ],
)
def test_bad_filters_are_one_line(items, keys, message):
    with pytest.raises(UsageError) as err:
        Filters(items, keys)
    assert err.value.message == message


def test_booleans():
    assert Filters(["dangling=true"], IMAGE_KEYS).boolean("dangling") is True
    assert Filters(["dangling=false"], IMAGE_KEYS).boolean("dangling") is False
    assert Filters([], IMAGE_KEYS).boolean("dangling") is None
    with pytest.raises(UsageError):
        Filters(["dangling=maybe"], IMAGE_KEYS).boolean("dangling")


def test_port_ranges():
    assert _port_range("80", "publish") == (80, 80, "tcp")
    assert _port_range("8000-8080/udp", "expose") == (8000, 8080, "udp")
    for bad in ("x", "0", "90-80", "80/icmp", "70000"):
        with pytest.raises(UsageError):
            _port_range(bad, "publish")


@pytest.mark.parametrize(
    "pattern, name, matches",
    [
        ("busybox", "busybox:latest", True),
        ("busybox:latest", "busybox:latest", True),
        ("busy*", "busybox:1.36", True),
        ("*:1.36", "busybox:1.36", True),
        ("*", "library/busybox:latest", False),  # path.Match: * stops at /
        ("*/*", "library/busybox:latest", True),
        ("busybox:1.*", "busybox:latest", False),
        ("localhost:5000/app", "localhost:5000/app:v1", True),
    ],
)
def test_reference_globs(pattern, name, matches):
    assert _reference_matches(pattern, name) is matches
