"""Seccomp profiles compiled: docker's JSON format (defaultAction, archMap, syscalls with args,
includes and excludes by capability, architecture and kernel) checked, resolved against a
container's capabilities as docker resolves it, then compiled by libseccomp (through pyseccomp)
into classic BPF, behind runc's ENOSYS stub and a guard of 32-bit arguments. Only when seccomp.py
finds no program in the store's cache, or a profile is given (--security-opt seccomp=FILE).
"""

from __future__ import annotations

import os
import sys

from minirun import leanjson
from minirun.errors import MinirunError, UsageError

TYPE_CHECKING = False  # not typing's: importing typing costs ~6 ms on the start path
if TYPE_CHECKING:
    from typing import Any, TypedDict

    # A profile in docker's format, and its rules and argument conditions: JSON objects, checked
    # by check_profile (their fields are many, mostly optional, of several types each)
    JsonObject = dict[str, Any]

    class Resolved(TypedDict):
        """resolve()'s result: what compile_program needs."""

        default: tuple[str, int]  # (action, errno)
        arches: list[str]
        flags: int
        rules: list[tuple[str, int, list[str], list[JsonObject]]]  # (action, errno, names, args)


_MAX_PROFILE = 4 << 20

# docker's architecture names (Go's GOARCH, as profiles spell them in includes/excludes) by uname -m
_GO_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "i686": "x86",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64": "mips64",
    "loongarch64": "loongarch64",
}
_ACTIONS_WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
_ACTIONS = (
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
)
_OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
EPERM = 1


# -- profiles: text in, checked and resolved rules out (pure) -------------------------------------


def read_profile(path: str) -> str:
    """A profile file's text, checked and compacted (docker stores it so, in SecurityOpt)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_PROFILE)
    except OSError as exc:
        raise UsageError(f"opening seccomp profile ({path}) failed: {(exc.strerror or str(exc)).lower()}") from None
    return compact_profile(raw, path)


def compact_profile(raw: str | bytes, where: str) -> str:
    """A profile's JSON text (a file's, or what docker's CLI sends in SecurityOpt: the file's
    content), checked and compacted; `where` names it in the errors."""
    if len(raw) >= _MAX_PROFILE:
        raise UsageError(f"seccomp profile ({where}) is too large: more than {_MAX_PROFILE >> 20} MiB")
    try:
        profile = leanjson.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"decoding seccomp profile ({where}) failed: {str(exc).splitlines()[0]}") from None
    check_profile(profile, where)
    return leanjson.dumps(profile, separators=(",", ":"))


def check_profile(profile: object, where: str) -> None:
    """Refuse what docker refuses, and what would otherwise be ignored silently."""

    def bad(why: str) -> UsageError:
        return UsageError(f"seccomp profile ({where}): {why}")

    if not isinstance(profile, dict):
        raise bad("not a JSON object")
    if profile.get("defaultAction", "") not in _ACTIONS:
        raise bad(f"unknown defaultAction {profile.get('defaultAction')!r}")
    if profile.get("architectures") and profile.get("archMap"):
        raise bad("both 'architectures' and 'archMap' are specified, use either 'architectures' or 'archMap'")
    default_errno = profile.get("defaultErrnoRet")
    if default_errno is not None and not (isinstance(default_errno, int) and 0 <= default_errno < 4096):
        raise bad(f"a bad defaultErrnoRet: {default_errno!r}")
    if profile.get("listenerPath"):
        raise bad("SCMP_ACT_NOTIFY listeners are not supported")
    for flag in profile.get("flags") or []:
        if flag not in _FLAGS:
            raise bad(f"unknown flag {flag!r}")
    syscalls = profile.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise bad("'syscalls' is not a list")
    for rule in syscalls:
        if not isinstance(rule, dict):
            raise bad("a syscall rule is not an object")
        if rule.get("name") and rule.get("names"):
            raise bad("both 'name' and 'names' are specified, use either 'name' or 'names'")
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if not names or not all(isinstance(n, str) for n in names):
            raise bad("a syscall rule names no syscall")
        if rule.get("action") not in _ACTIONS:
            raise bad(f"unknown action {rule.get('action')!r} for {names[0]}")
        for arg in rule.get("args") or []:
            if not (
                isinstance(arg, dict)
                and arg.get("op") in _OPS
                and arg.get("index") in range(6)
                and all(isinstance(arg.get(k, 0), int) and 0 <= arg.get(k, 0) < 2**64 for k in ("value", "valueTwo"))
            ):
                raise bad(f"a bad argument condition for {names[0]}: {arg!r}")
        if rule.get("errnoRet") is not None and not (
            isinstance(rule["errnoRet"], int) and 0 <= rule["errnoRet"] < 4096
        ):
            raise bad(f"a bad errnoRet for {names[0]}: {rule['errnoRet']!r}")


def _kernel_at_least(wanted: str, release: str) -> bool:
    def numbers(text: str) -> tuple[int, ...]:
        parts = []
        for piece in text.split("-")[0].split(".")[:2]:
            digits = "".join(c for c in piece if c.isdigit())
            parts.append(int(digits) if digits else 0)
        return tuple(parts)

    return numbers(release) >= numbers(wanted)


def _applies(rule: JsonObject, capabilities: frozenset[str], arch: str, release: str) -> bool:
    """docker's includes/excludes: every included capability held, no excluded one, the arch and
    kernel as asked."""
    includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
    if arch in (excludes.get("arches") or []):
        return False
    if any(cap in capabilities for cap in excludes.get("caps") or []):
        return False
    if excludes.get("minKernel") and _kernel_at_least(excludes["minKernel"], release):
        return False
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if not all(cap in capabilities for cap in includes.get("caps") or []):
        return False
    if includes.get("minKernel") and not _kernel_at_least(includes["minKernel"], release):
        return False
    return True


def resolve(profile: JsonObject, capabilities: frozenset[str], machine: str, release: str) -> Resolved:
    """The rules that apply to a container holding `capabilities`, with the architectures to
    filter: {"default": (action, errno), "arches": [...], "flags": int, "rules": [(action, errno,
    [names], [args])]}. Pure."""
    arch = _GO_ARCH.get(machine, machine)
    default_errno = int(profile.get("defaultErrnoRet") or EPERM)
    arches: list[str] = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if _seccomp_arch_is(entry.get("architecture", ""), machine):
            arches = [entry["architecture"], *(entry.get("subArchitectures") or [])]
            break
    rules = []
    for rule in profile.get("syscalls") or []:
        if not _applies(rule, capabilities, arch, release):
            continue
        names = rule.get("names") or [rule["name"]]
        errno_ = int(rule.get("errnoRet") or (EPERM if rule["action"] in _ACTIONS_WITH_ERRNO else 0))
        rules.append((rule["action"], errno_, list(names), list(rule.get("args") or [])))
    flags = 0
    for flag in profile.get("flags") or []:
        flags |= _FLAGS[flag]
    return {"default": (profile["defaultAction"], default_errno), "arches": arches, "flags": flags, "rules": rules}


_NATIVE_SECCOMP_ARCH = {
    "x86_64": "SCMP_ARCH_X86_64",
    "aarch64": "SCMP_ARCH_AARCH64",
    "i686": "SCMP_ARCH_X86",
    "armv7l": "SCMP_ARCH_ARM",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "s390x": "SCMP_ARCH_S390X",
    "riscv64": "SCMP_ARCH_RISCV64",
}


def _seccomp_arch_is(name: str, machine: str) -> bool:
    return _NATIVE_SECCOMP_ARCH.get(machine) == name


# -- compiling (libseccomp) and caching -------------------------------------------------------------


def compile_program(resolved: Resolved) -> bytes:
    """libseccomp's BPF for resolved rules, as runc builds it: names the library does not know
    are skipped (a profile lists syscalls of newer kernels and other arches), a rule whose action
    is the default one is left out, and conditions on one argument index are separate rules.
    Before it, runc's ENOSYS stub (enosys_stub) and the guard of 32-bit arguments (int_args_stub)."""
    import pyseccomp as sc  # ~35 ms: only when a program is not in the cache

    def action(name: str, errno_: int) -> int:
        actions: dict[str, int] = {
            "SCMP_ACT_KILL": sc.KILL,
            "SCMP_ACT_KILL_THREAD": sc.KILL_THREAD,
            "SCMP_ACT_KILL_PROCESS": sc.KILL_PROCESS,
            "SCMP_ACT_TRAP": sc.TRAP,
            "SCMP_ACT_ERRNO": sc.ERRNO(errno_),
            "SCMP_ACT_TRACE": sc.TRACE(errno_),
            "SCMP_ACT_ALLOW": sc.ALLOW,
            "SCMP_ACT_LOG": sc.LOG,
        }
        return actions[name]

    ops = {
        "SCMP_CMP_NE": sc.NE,
        "SCMP_CMP_LT": sc.LT,
        "SCMP_CMP_LE": sc.LE,
        "SCMP_CMP_EQ": sc.EQ,
        "SCMP_CMP_GE": sc.GE,
        "SCMP_CMP_GT": sc.GT,
        "SCMP_CMP_MASKED_EQ": sc.MASKED_EQ,
    }
    default = action(*resolved["default"])
    program = sc.SyscallFilter(default)
    # A binary tree of syscall numbers, not libseccomp's default list: seccomp(2) runs the program
    # once for every syscall number when it installs it (the kernel's allow cache), and through a
    # list of ~300 numbers that took 1.6 ms of every start and exec here, through the tree 0.8 ms
    # (a few more instructions, each syscall's path far shorter). libseccomp < 2.5 has no tree: a list.
    try:
        program.set_attr(sc.Attr.CTL_OPTIMIZE, 2)
    except OSError:
        pass
    arches = [sc.system_arch()]
    for name in resolved["arches"]:
        arch = getattr(sc.Arch, name.removeprefix("SCMP_ARCH_"), None)
        if arch is not None and arch not in arches:
            try:
                program.add_arch(arch)
            except OSError:
                continue  # a sub-architecture this libseccomp cannot filter
            arches.append(arch)
    for act_name, errno_, names, args in resolved["rules"]:
        act = action(act_name, errno_)
        if act == default:
            continue
        conditions = [
            sc.Arg(int(a["index"]), ops[a["op"]], int(a.get("value") or 0), int(a.get("valueTwo") or 0)) for a in args
        ]
        indexes = [int(a["index"]) for a in args]
        groups = [conditions] if len(set(indexes)) == len(indexes) else [[c] for c in conditions]
        for name in names:
            number = sc.resolve_syscall(sc.Arch.NATIVE, name)
            if number == -1:  # __NR_SCMP_ERROR: unknown to this libseccomp
                continue
            for group in groups:
                try:
                    program.add_rule(act, number, *group)
                except OSError as exc:
                    raise MinirunError(f"seccomp: rule for {name}: {exc.strerror}") from None
    read_fd, write_fd = os.pipe()
    try:
        with os.fdopen(write_fd, "wb", closefd=True) as sink:
            program.export_bpf(sink)
        chunks = []
        while chunk := os.read(read_fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
    denied = resolved["default"][1] if resolved["default"][0] == "SCMP_ACT_ERRNO" else EPERM
    guard = int_args_stub(_narrowed_args(sc, arches, resolved), denied)
    if resolved["default"][0] in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"):
        return guard + b"".join(chunks)  # what the filter does not name runs anyway: nothing to tell apart
    named = {name for _, _, rule_names, _ in resolved["rules"] for name in rule_names}
    largest = {}
    for arch in arches:
        known = [n for n in (sc.resolve_syscall(arch, name) for name in named) if n >= 0]
        if known:
            largest[int(arch)] = max(known)
    return enosys_stub(largest) + guard + b"".join(chunks)


def _narrowed_args(sc: Any, arches: list[Any], resolved: Resolved) -> dict[int, list[tuple[int, tuple[int, ...]]]]:
    """int_args_stub's input: by audit arch, the syscall numbers and 32-bit argument indexes of
    int_args_guarded, on the 64-bit arches (x32 among them: its arguments are 64-bit registers)."""
    guarded = int_args_guarded(resolved)
    narrow: dict[int, list[tuple[int, tuple[int, ...]]]] = {}
    for arch in arches:
        token = int(arch)
        if not token & _AUDIT_ARCH_64BIT and token != _SCMP_ARCH_X32:
            continue  # a 32-bit arch: the filter sees the 32 bits the kernel takes
        audit = _AUDIT_ARCH_X86_64 if token == _SCMP_ARCH_X32 else token  # x32: x86_64's, with a bit
        for name, indexes in guarded.items():
            number = sc.resolve_syscall(arch, name)
            if number >= 0:
                narrow.setdefault(audit, []).append((number, indexes))
    return narrow


# classic BPF (linux/filter.h, linux/seccomp.h, linux/audit.h)
_LD_W_ABS, _JEQ_K, _JGT_K, _JSET_K, _JA, _RET_K = 0x20, 0x15, 0x25, 0x45, 0x05, 0x06
_ARCH_OFFSET, _NR_OFFSET = 4, 0  # in struct seccomp_data
_RET_ERRNO = 0x00050000
_RET_ENOSYS = _RET_ERRNO | 38  # SECCOMP_RET_ERRNO | ENOSYS
_AUDIT_ARCH_X86_64 = 0xC000003E
_SCMP_ARCH_X32 = 0x4000003E  # libseccomp's own token: the kernel reports x32 as x86_64 ...
_X32_SYSCALL_BIT = 0x40000000  # ... with this bit set in the syscall number


def enosys_stub(largest: dict[int, int]) -> bytes:
    """BPF run before libseccomp's: a syscall numbered above the largest one the filter names
    (`largest`, by libseccomp's arch token) gets ENOSYS, as runc's patchbpf gives it, and not the
    profile's default EPERM. A syscall newer than this libseccomp is one the kernel may have (docker's
    profile allows statmount, mseal, ...) but the filter cannot name: a program falls back on ENOSYS
    as it would on an older kernel, where EPERM fails it. The rest goes on to libseccomp's program."""
    sections: list[tuple[int, int, int | None]] = []  # (audit arch, largest plain, largest x32)
    for token, number in largest.items():
        if token == _SCMP_ARCH_X32:
            continue
        x32 = largest.get(_SCMP_ARCH_X32) if token == _AUDIT_ARCH_X86_64 else None
        sections.append((token, number, x32))
    # instructions as [code, jt, jf, k]; jumps name labels, resolved below
    code: list[list[Any]] = [[_LD_W_ABS, 0, 0, _ARCH_OFFSET]]
    code += [[_JEQ_K, f"arch{i}", 0, audit] for i, (audit, _, _) in enumerate(sections)]
    code.append([_JA, 0, 0, "filter"])
    labels: dict[str, int] = {}
    for i, (audit, plain, x32) in enumerate(sections):
        labels[f"arch{i}"] = len(code)
        code.append([_LD_W_ABS, 0, 0, _NR_OFFSET])
        if audit == _AUDIT_ARCH_X86_64:  # x32 calls: against x32's largest, else to the filter
            code.append([_JSET_K, f"x32_{i}" if x32 is not None else "filter", 0, _X32_SYSCALL_BIT])
        code.append([_JGT_K, "enosys", "filter", plain])
        if audit == _AUDIT_ARCH_X86_64 and x32 is not None:
            labels[f"x32_{i}"] = len(code)
            code.append([_JGT_K, "enosys", "filter", x32])
    labels["enosys"] = len(code)
    code.append([_RET_K, 0, 0, _RET_ENOSYS])
    return _assemble(code, labels)


def _assemble(code: list[list[Any]], labels: dict[str, int]) -> bytes:
    """Instructions as [code, jt, jf, k], jumps by label ("filter": past the end, on to the next
    program) or by count, as classic BPF."""
    labels["filter"] = len(code)
    out = bytearray()
    for at, (op, jt, jf, k) in enumerate(code):
        if op == _JA:
            k = labels[k] - at - 1
        else:
            jt = labels[jt] - at - 1 if isinstance(jt, str) else jt
            jf = labels[jf] - at - 1 if isinstance(jf, str) else jf
        out += op.to_bytes(2, sys.byteorder) + bytes((jt, jf)) + k.to_bytes(4, sys.byteorder)
    return bytes(out)


# Arguments the kernel reads as 32-bit ints (socket's family, type and protocol; personality's
# persona) where libseccomp compares all 64 bits of the register on a 64-bit arch: socket(
# 0x100000028, ...) is not "family > 40" to the kernel but AF_VSOCK, which docker's profile refuses.
_INT_ARGS = {"socket": (0, 1, 2), "socketpair": (0, 1, 2), "personality": (0,)}
_AUDIT_ARCH_64BIT = 0x80000000
_ARGS_OFFSET = 16  # struct seccomp_data: u64 args[6] after nr, arch and instruction_pointer


def int_args_guarded(resolved: Resolved) -> dict[str, tuple[int, ...]]:
    """The 32-bit arguments (by syscall name) some applied rule conditions on with a comparison
    the upper half can sway: all but SCMP_CMP_MASKED_EQ, whose mask's upper half is 0. Pure."""
    guarded: dict[str, set[int]] = {}
    for _, _, names, args in resolved["rules"]:
        for arg in args:
            index = int(arg["index"])
            if arg["op"] == "SCMP_CMP_MASKED_EQ" and int(arg.get("value") or 0) < 2**32:
                continue
            for name in names:
                if index in _INT_ARGS.get(name, ()):
                    guarded.setdefault(name, set()).add(index)
    return {name: tuple(sorted(indexes)) for name, indexes in sorted(guarded.items())}


def int_args_stub(narrow: dict[int, list[tuple[int, tuple[int, ...]]]], errno_: int) -> bytes:
    """BPF run before libseccomp's: on a 64-bit arch, a 32-bit argument (`narrow`: by audit arch,
    (syscall number, argument indexes)) whose upper half is neither 0 nor the sign extension of
    its lower half gets `errno_`. The kernel drops that half, the filter's comparisons do not: a
    value the filter reads as allowed would reach the kernel as one it refuses. The rest goes on."""
    if not narrow:
        return b""
    sections = sorted(narrow.items())
    code: list[list[Any]] = [[_LD_W_ABS, 0, 0, _ARCH_OFFSET]]
    code += [[_JEQ_K, f"arch{i}", 0, audit] for i, (audit, _) in enumerate(sections)]
    code.append([_JA, 0, 0, "filter"])
    labels: dict[str, int] = {}
    for i, (_, calls) in enumerate(sections):
        labels[f"arch{i}"] = len(code)
        code.append([_LD_W_ABS, 0, 0, _NR_OFFSET])
        code += [[_JEQ_K, f"call{i}_{j}", 0, number] for j, (number, _) in enumerate(calls)]
        code.append([_JA, 0, 0, "filter"])
        for j, (_, indexes) in enumerate(calls):
            labels[f"call{i}_{j}"] = len(code)
            for index in indexes:
                low, high = _ARGS_OFFSET + 8 * index, _ARGS_OFFSET + 8 * index + 4
                if sys.byteorder == "big":
                    low, high = high, low
                code.append([_LD_W_ABS, 0, 0, high])
                code.append([_JEQ_K, 3, 0, 0])  # upper half 0: on to the next argument
                code.append([_JEQ_K, 0, "deny", 0xFFFFFFFF])
                code.append([_LD_W_ABS, 0, 0, low])
                code.append([_JSET_K, 0, "deny", 0x80000000])  # a negative int, sign-extended
            code.append([_JA, 0, 0, "filter"])
    labels["deny"] = len(code)
    code.append([_RET_K, 0, 0, _RET_ERRNO | errno_])
    return _assemble(code, labels)
