"""minirun.leanjson gives json's answers: the same values, the same text, the same errors."""

from __future__ import annotations

import json
import math

import pytest

from minirun import leanjson

DOCUMENTS = [
    '{"a": 1, "b": [1, 2.5, -3e10, true, false, null], "c": {"d": "\\u00e9\\n"}}',
    "  [1, 2]\n",
    '"just a string"',
    "12",
    "[NaN, Infinity, -Infinity]",
    '{"deep": ' * 50 + "1" + "}" * 50,
]
BROKEN = ["", "   ", "{", '{"a": 1,}', "[1] x", "nul", '"\\x"', '{"a" 1}', "\ufeff[1]", '"\x01"']


@pytest.mark.parametrize("text", DOCUMENTS)
def test_loads_reads_as_json_does(text: str) -> None:
    got, expected = leanjson.loads(text), json.loads(text)
    assert repr(got) == repr(expected)  # repr: NaN != NaN
    assert repr(leanjson.loads(text.encode())) == repr(expected)


@pytest.mark.parametrize("text", BROKEN)
def test_loads_fails_as_json_does(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        leanjson.loads(text)
    assert str(got.value) == str(expected.value)


def test_loads_of_bytes_that_are_not_utf8_is_jsons() -> None:
    text = '{"k": "v"}'.encode("utf-16")
    assert leanjson.loads(text) == json.loads(text)


VALUES = [
    {"b": 1, "a": [1.5, None, True, "é\n\x00"], "c": {}, "d": []},
    "plain",
    [math.inf, -math.inf, 10**30, -0.0],
    {"ünï": {"x": (1, 2)}},
]


@pytest.mark.parametrize("value", VALUES)
def test_dumps_writes_as_json_does(value) -> None:
    assert leanjson.dumps(value) == json.dumps(value)
    compact = {"separators": (",", ":"), "sort_keys": True}
    assert leanjson.dumps(value, **compact) == json.dumps(value, **compact)
    assert leanjson.dumps(value, indent=1, sort_keys=True) == json.dumps(value, indent=1, sort_keys=True)
    assert leanjson.dumps(value, ensure_ascii=False) == json.dumps(value, ensure_ascii=False)


def test_dumps_refuses_what_json_refuses() -> None:
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        leanjson.dumps({"a": {1}})
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        leanjson.dumps(loop)
