"""Which arguments seccomp.int_args_stub guards: the 32-bit ones a rule compares in a way the
upper half of the register can sway."""

from __future__ import annotations

import json
import os

from minirun.runtime import seccomp


def test_dockers_profile_guards_socket_family_and_personality():
    with open(seccomp.DEFAULT_PROFILE, encoding="utf-8") as f:
        profile = json.load(f)
    resolved = seccomp.resolve(profile, frozenset(), "x86_64", os.uname().release)
    assert seccomp.int_args_guarded(resolved) == {"personality": (0,), "socket": (0,)}


def test_a_mask_within_32_bits_and_a_64_bit_argument_need_no_guard():
    def rule(name: str, op: str, value: int, index: int = 0):
        return ("SCMP_ACT_ALLOW", 0, [name], [{"index": index, "op": op, "value": value}])

    resolved: seccomp.Resolved = {
        "default": ("SCMP_ACT_ERRNO", 1),
        "arches": [],
        "flags": 0,
        "rules": [
            rule("clone", "SCMP_CMP_MASKED_EQ", 0x7E020000),
            rule("socket", "SCMP_CMP_MASKED_EQ", 1 << 40),
            rule("mmap", "SCMP_CMP_GT", 4096, 1),
            rule("socketpair", "SCMP_CMP_NE", 40),
        ],
    }
    assert seccomp.int_args_guarded(resolved) == {"socket": (0,), "socketpair": (0,)}
