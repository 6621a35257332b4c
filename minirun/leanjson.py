"""json.loads and json.dumps for the start paths and the monitor, straight from the C accelerator
the json package itself uses (`_json`). Importing json imports re, and with it enum, functools
and collections: ~5 ms of every `exec` and `run`, and memory in every monitor, for patterns only
json's pure-Python fallbacks need.

Same answers as json: anything this does not take (bytes that are not UTF-8, `indent`, a
document the scanner refuses) goes to the json package, so its errors stay json's
(tests/unit/test_leanjson.py compares the two).
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # typing costs ~6 ms to import
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"  # json.decoder.WHITESPACE
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _DecoderSettings:
    """What _json.make_scanner reads of a json.JSONDecoder(): its defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_scan = _json.make_scanner(_DecoderSettings())  # type: ignore[arg-type]  # it reads attributes


def loads(text: str | bytes) -> Any:
    """json.loads(text)."""
    if not isinstance(text, str):
        try:
            text = bytes(text).decode()
        except UnicodeDecodeError:
            return _json_module().loads(text)  # json's encoding detection, or its error
    try:
        start = len(text) - len(text.lstrip(_WHITESPACE))
        value, end = _scan(text, start)
        if end == len(text) or not text[end:].strip(_WHITESPACE):
            return value
    except (StopIteration, ValueError):
        pass
    return _json_module().loads(text)  # json's own error, naming line and column


def _not_serializable(value: Any) -> None:
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def dumps(
    value: Any,
    *,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
    indent: int | None = None,
    ensure_ascii: bool = True,
) -> str:
    """json.dumps(value, ...) with these options; `indent` goes to json (_json has none)."""
    if indent is not None:
        return _json_module().dumps(
            value, separators=separators, sort_keys=sort_keys, indent=indent, ensure_ascii=ensure_ascii
        )
    encode_string = _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring
    item_separator, key_separator = separators or (", ", ": ")
    if isinstance(value, str):
        return encode_string(value)
    encode = _json.make_encoder(
        {},  # markers: a circular reference is a ValueError, as in json
        _not_serializable,
        encode_string,
        None,
        key_separator,
        item_separator,
        sort_keys,
        False,  # skipkeys
        True,  # allow_nan
    )
    return "".join(encode(value, 0))


def _json_module() -> Any:
    import json

    return json


def load(file: Any) -> Any:
    """json.load(file)."""
    return loads(file.read())
