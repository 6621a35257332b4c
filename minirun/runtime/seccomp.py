"""Seccomp: the BPF program a container's processes run under, from the store's cache.

A profile in docker's JSON format is compiled once per profile, capability set and kernel
(seccompcompile.py: resolved as docker resolves it, then compiled by libseccomp, ~60 ms) and kept
in the store under a key of everything it depends on; a start only reads it back here, and PID 1
and every exec'd process install it with seccomp(2) as their last step before execve
(linux.seccomp_set_filter). Apart from the compiler so that a start loads none of it.

The default profile (profiles/seccomp.json) is docker's default, in docker's format: an
allowlist with errno EPERM for the rest, where unshare, clone with namespace flags, mount,
setns, keyctl, bpf, perf_event_open, io_uring and userfaultfd are not allowed to a container
without CAP_SYS_ADMIN (or the capability named), so its root cannot open a user namespace and
mount its own cgroups.
"""

from __future__ import annotations

import os

from minirun import linux

try:  # the builtin hashlib wraps: importing hashlib itself loads OpenSSL, ~4 ms of every start
    from _blake2 import blake2b as _digest
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import blake2b as _digest

PROFILE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profiles")
DEFAULT_PROFILE = os.path.join(PROFILE_DIR, "seccomp.json")
UNCONFINED = "unconfined"
BUILTIN = "builtin"  # docker's name for its default profile (seccompProfileDefault)
# part of every cache key: a change of seccompcompile.py's rules or output changes it
_FORMAT = b"minirun-seccomp-4"


class Program:
    """A compiled filter and the seccomp(2) flags to install it with."""

    __slots__ = ("code", "flags")

    def __init__(self, code: bytes, flags: int) -> None:
        self.code, self.flags = code, flags

    def install(self) -> None:
        linux.seccomp_set_filter(self.code, self.flags)


def profile_text(security_opt: list[str]) -> str:
    """The profile a confined container's SecurityOpt names: its own, or the default."""
    for opt in security_opt:
        key, _, value = opt.partition("=")
        if key == "seccomp" and value not in (UNCONFINED, BUILTIN):
            return value
    with open(DEFAULT_PROFILE, encoding="utf-8") as f:
        return f.read()


def program_for(cache_dir: str, text: str, capabilities: list[str]) -> Program:
    """The compiled program for `text` and `capabilities` on this machine: from the cache, or
    compiled and cached (a write that loses a race with another start is harmless: same bytes)."""
    uname = os.uname()
    caps = ",".join(sorted(capabilities)).encode()
    key = _digest(
        b"\0".join([_FORMAT, text.encode(), caps, uname.machine.encode(), uname.release.encode()]), digest_size=32
    ).hexdigest()
    path = os.path.join(cache_dir, f"{key}.bpf")
    try:
        with open(path, "rb") as f:
            blob = f.read()
        if len(blob) > 4 and (len(blob) - 4) % 8 == 0:
            return Program(blob[4:], int.from_bytes(blob[:4], "little"))
    except FileNotFoundError:
        pass
    from minirun import leanjson
    from minirun.runtime.seccompcompile import check_profile, compile_program, resolve

    profile = leanjson.loads(text)
    check_profile(profile, "SecurityOpt")
    resolved = resolve(profile, frozenset(capabilities), uname.machine, uname.release)
    program = Program(compile_program(resolved), resolved["flags"])
    from minirun.store.fsutil import atomic_write

    os.makedirs(cache_dir, 0o700, exist_ok=True)
    atomic_write(path, program.flags.to_bytes(4, "little") + program.code, mode=0o600, durable=False)
    return program
