"""The default seccomp program on the three ABIs of an x86_64 kernel, and which arguments
seccompcompile.int_args_stub guards: the 32-bit ones a rule compares in a way the upper half of the
register can sway."""

from __future__ import annotations

import json
import os
import struct

import pytest

from minirun.runtime import seccomp, seccompcompile


def test_dockers_profile_guards_socket_family_and_personality():
    with open(seccomp.DEFAULT_PROFILE, encoding="utf-8") as f:
        profile = json.load(f)
    resolved = seccompcompile.resolve(profile, frozenset(), "x86_64", os.uname().release)
    assert seccompcompile.int_args_guarded(resolved) == {"personality": (0,), "socket": (0,)}


def test_a_mask_within_32_bits_and_a_64_bit_argument_need_no_guard():
    def rule(name: str, op: str, value: int, index: int = 0):
        return ("SCMP_ACT_ALLOW", 0, [name], [{"index": index, "op": op, "value": value}])

    resolved: seccompcompile.Resolved = {
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
    assert seccompcompile.int_args_guarded(resolved) == {"socket": (0,), "socketpair": (0,)}


# -- the compiled program, run by a classic BPF interpreter: every arch of x86_64's archMap --------

_AUDIT = {"x86_64": 0xC000003E, "i386": 0x40000003, "x32": 0xC000003E}
_X32_BIT = 0x40000000
ALLOW, EPERM, ENOSYS = 0x7FFF0000, 0x00050001, 0x00050026


def run_bpf(program: bytes, nr: int, arch: int, args: tuple[int, ...] = (0,) * 6) -> int:
    """What seccomp returns for struct seccomp_data {nr, arch, ip 0, args}: the instructions
    libseccomp and minirun's stubs use, nothing more."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(a & (2**64 - 1) for a in (*args, 0, 0, 0, 0, 0, 0)[:6]))
    code = [struct.unpack_from("<HBBI", program, at) for at in range(0, len(program), 8)]
    acc, pc = 0, 0
    while True:
        op, jt, jf, k = code[pc]
        pc += 1
        if op == 0x20:  # ld [k]
            acc = struct.unpack_from("<I", data, k)[0]
        elif op == 0x54:  # and k
            acc &= k
        elif op == 0x05:  # ja
            pc += k
        elif op in (0x15, 0x25, 0x35, 0x45):  # jeq, jgt, jge, jset
            taken = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k, 0x45: bool(acc & k)}[op]
            pc += jt if taken else jf
        elif op == 0x06:  # ret
            return k
        else:
            raise AssertionError(f"instruction {op:#x} at {pc - 1}")


@pytest.fixture(scope="module")
def default_program() -> bytes:
    if os.uname().machine != "x86_64":
        pytest.skip("x86_64's archMap: x86_64, i386, x32")
    with open(seccomp.DEFAULT_PROFILE, encoding="utf-8") as f:
        profile = json.load(f)
    return seccompcompile.compile_program(seccompcompile.resolve(profile, frozenset(), "x86_64", os.uname().release))


def test_i386_and_x32_calls_meet_the_rules_x86_64_calls_meet(default_program):
    """By name, one verdict on all three ABIs of an x86_64 kernel (int $0x80, x32's bit): no
    syscall docker's profile refuses gets through another entry."""
    import pyseccomp as sc

    arches = {"x86_64": sc.Arch.X86_64, "i386": sc.Arch.X86, "x32": sc.Arch.X32}
    verdicts: dict[str, dict[str, int]] = {}
    for abi, arch in arches.items():
        for nr in range(600):
            number = nr | (_X32_BIT if abi == "x32" else 0)
            try:
                name = sc.resolve_syscall(arch, number)
            except ValueError:
                continue
            name = name.decode() if isinstance(name, bytes) else name
            verdicts.setdefault(name, {})[abi] = run_bpf(default_program, number, _AUDIT[abi])
    mixed = {name: got for name, got in verdicts.items() if len(set(got.values())) > 1}
    assert mixed == {}
    assert {verdicts["unshare"][abi] for abi in arches} == {EPERM}
    assert {verdicts["getpid"][abi] for abi in arches} == {ALLOW}


@pytest.mark.parametrize("abi,number", [("x86_64", 41), ("x32", 41 | _X32_BIT)])
def test_socket_family_high_bits_are_refused_on_the_64_bit_abis(default_program, abi, number):
    def family(value: int) -> int:
        return run_bpf(default_program, number, _AUDIT[abi], (value, 1, 0))

    assert (family(2), family(40), family(41)) == (ALLOW, EPERM, ALLOW)
    assert family((1 << 32) | 40) == EPERM  # AF_VSOCK to the kernel
    assert family(-(2**31) | 40) == ALLOW  # a negative int, sign-extended: EAFNOSUPPORT past the filter
    assert run_bpf(default_program, 359, _AUDIT["i386"], (40, 1, 0)) == EPERM


def test_an_unknown_arch_is_killed(default_program):
    assert run_bpf(default_program, 39, 0x40000028) in (0, 0x80000000)  # arm: SECCOMP_RET_KILL_*
