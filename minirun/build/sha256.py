"""SHA-256 for the build's cache keys and context digests, without loading OpenSSL where it does
not pay: `import hashlib` loads libcrypto, ~5 ms of every start, a fair part of what a fully
cached build may cost (scripts/bench_build.py). CPython's own SHA-256 loads in ~0.1 ms and
serves keys and the first BIG bytes of context a build hashes; past them hashlib's takes over,
~7 times faster per byte here (1.35 GB/s against 0.18). Both give the same digest: they are the
same function."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

BIG = 1 << 20  # OpenSSL's load (~5 ms) costs what the builtin one loses on ~1 MiB
_announced = 0  # the bytes callers said they would hash, this process


def _builtin() -> Callable[..., Any]:
    try:
        from _sha2 import sha256  # type: ignore[import-not-found,unused-ignore]  # Python >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found,unused-ignore]  # Python <= 3.11
        except ImportError:  # an interpreter without them
            from hashlib import sha256
    return sha256


_new = _builtin()


def new(data: bytes = b"", size_hint: int = 0) -> Any:
    """A sha256 object (update, hexdigest), fed `data`; `size_hint`: the bytes still to come."""
    global _announced
    _announced += size_hint
    if _announced >= BIG:
        import hashlib

        return hashlib.sha256(data)
    return _new(data)
