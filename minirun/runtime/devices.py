"""The devices a container may open: docker's default allow list plus `--device` and
`--device-cgroup-rule`, enforced by the cgroup on both versions.

cgroup v1 has a devices controller: `devices.deny` takes "a" (nothing), then `devices.allow`
takes one rule per line. cgroup v2 has no such files: the kernel asks a BPF program of type
CGROUP_DEVICE attached to the cgroup instead, on every open and mknod of a device node. The
program is small and written here instruction by instruction (as runc and crun generate
theirs), then loaded and attached with bpf(2).

A rule is (type, major, minor, access): type "c", "b" or "a" (all), major/minor -1 for `*`,
access a subset of "rwm". Anything no rule allows is refused: mknod of any node is allowed (as
in docker), but opening it is not, unless it is one of the few nodes a container gets.
"""

from __future__ import annotations

import os
import stat
import struct

from minirun.errors import MinirunError, UsageError

Rule = tuple[str, int, int, str]  # (type, major, minor, access)

# docker's defaults (runc's AllowedDevices): mknod of anything, and the nodes every container has
DEFAULT_RULES: tuple[Rule, ...] = (
    ("c", -1, -1, "m"),
    ("b", -1, -1, "m"),
    ("c", 1, 3, "rwm"),  # null
    ("c", 1, 5, "rwm"),  # zero
    ("c", 1, 7, "rwm"),  # full
    ("c", 1, 8, "rwm"),  # random
    ("c", 1, 9, "rwm"),  # urandom
    ("c", 5, 0, "rwm"),  # tty
    ("c", 5, 1, "rwm"),  # console
    ("c", 5, 2, "rwm"),  # ptmx
    ("c", 136, -1, "rwm"),  # the container's own ptys (devpts)
)
ALL_DEVICES: tuple[Rule, ...] = (("a", -1, -1, "rwm"),)


# -- --device HOST[:CONTAINER][:PERMS] (pure but for the stat of HOST) -------------------------------


def parse_device(spec: str) -> list[str]:
    """docker's --device: [host path, container path, permissions]; the host path must be a
    device node (docker follows a symlink to it)."""
    parts = spec.split(":")
    perms = "rwm"
    if len(parts) > 1 and _is_perms(parts[-1]):
        perms = parts.pop()
    if len(parts) > 2 or not parts[0]:
        raise UsageError(f"invalid device specification: {spec}")
    host = parts[0]
    container = parts[1] if len(parts) == 2 and parts[1] else host
    if not host.startswith("/") or not container.startswith("/"):
        raise UsageError(f"invalid device specification: {spec}: paths must be absolute")
    device_number(host)  # fails now, before anything is created
    container = os.path.normpath(container)
    if not container.startswith("/dev/"):
        raise UsageError(f"invalid device specification: {spec}: the container path must be under /dev")
    return [host, container, perms]


def _is_perms(text: str) -> bool:
    return bool(text) and len(text) <= 3 and set(text) <= set("rwm") and len(set(text)) == len(text)


def device_number(path: str) -> tuple[str, int, int]:
    """("c" or "b", major, minor) of the node at `path` (symlinks followed)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UsageError(
            f'error gathering device information while adding custom device "{path}": '
            f"{(exc.strerror or str(exc)).lower()}"
        ) from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise UsageError(f'error gathering device information while adding custom device "{path}": not a device node')
    return kind, os.major(st.st_rdev), os.minor(st.st_rdev)


# -- --device-cgroup-rule 'TYPE MAJOR:MINOR ACCESS' (pure) ---------------------------------------


def parse_cgroup_rule(text: str) -> Rule:
    """docker's --device-cgroup-rule (its ValidateDeviceCgroupRule's pattern: `c 1:3 rwm`,
    `b 8:* r`, `a *:* m`) as a rule; ValueError when it is not one. Only a rule for the cgroup:
    no node is made. Type `a` allows every device, whatever its numbers and access say: runc's
    devices emulator (and the v1 kernel itself) reads an `a` rule so, and docker runs that."""
    words = text.split(" ")
    if len(words) != 3 or words[0] not in ("a", "b", "c") or not _is_access(words[2]):
        raise ValueError(text)
    major, colon, minor = words[1].partition(":")
    if not colon:
        raise ValueError(text)
    numbers = []
    for number in (major, minor):
        if number == "*":
            numbers.append(-1)
        elif number.isascii() and number.isdigit() and int(number) < 1 << 32:  # (the kernel's u32)
            numbers.append(int(number))
        else:
            raise ValueError(text)
    if words[0] == "a":
        return ALL_DEVICES[0]
    access = "".join(a for a in "rwm" if a in words[2])  # "rrr" is "r", as the kernel reads it
    return (words[0], numbers[0], numbers[1], access)


def _is_access(text: str) -> bool:
    return 1 <= len(text) <= 3 and set(text) <= set("rwm")


def rules_for(devices: list[list[str]], privileged: bool, cgroup_rules: list[str] | tuple[str, ...] = ()) -> list[Rule]:
    """The container's rules: every device when privileged, else docker's defaults, one rule
    per --device (its node as it is now) and one per --device-cgroup-rule."""
    if privileged:
        return list(ALL_DEVICES)
    rules = list(DEFAULT_RULES)
    for host, _container, perms in devices:
        kind, major, minor = device_number(host)
        rules.append((kind, major, minor, perms))
    for text in cgroup_rules:
        try:
            rules.append(parse_cgroup_rule(text))
        except ValueError:
            raise UsageError(f"invalid device cgroup rule format: '{text}'") from None
    return rules


# -- cgroup v1 ---------------------------------------------------------------------------------------


def v1_lines(rules: list[Rule]) -> list[tuple[str, str]]:
    """(file, line) writes for a v1 devices cgroup: deny everything, then allow each rule."""

    def number(n: int) -> str:
        return "*" if n < 0 else str(n)

    writes = [("devices.deny", "a")]
    for kind, major, minor, access in rules:
        line = "a" if kind == "a" else f"{kind} {number(major)}:{number(minor)} {access}"
        writes.append(("devices.allow", line))
    return writes


# -- cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program ------------------------------------------------

# the kernel's context (struct bpf_cgroup_dev_ctx): u32 access_type (access << 16 | type), major, minor
_TYPE = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
_ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
_R0, _R1, _R2, _R3, _R4, _R5 = range(6)


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _load_word(dst: int, offset: int) -> bytes:
    return _insn(0x61, dst, _R1, offset)  # dst = *(u32 *)(r1 + offset)


def _jne(reg: int, imm: int, skip: int) -> bytes:
    # if reg != imm: skip `skip` instructions. imm is sign-extended: a number of 2**31 or more
    # (a --device-cgroup-rule's, which no device has) then never matches the register's u32
    return _insn(0x55, reg, 0, skip, imm if imm < 1 << 31 else imm - (1 << 32))


def bpf_program(rules: list[Rule]) -> bytes:
    """The program: the first rule that covers the request allows it; nothing else does.

    r2 = requested access bits, r3 = device type, r4 = major, r5 = minor; each rule is a run of
    checks that jump to the next rule on a mismatch, then `return 1`.
    """
    body = [
        _load_word(_R2, 0),
        _insn(0xBF, _R3, _R2),  # r3 = r2
        _insn(0x57, _R3, imm=0xFFFF),  # r3 &= 0xffff: the type
        _insn(0x77, _R2, imm=16),  # r2 >>= 16: the access
        _load_word(_R4, 4),
        _load_word(_R5, 8),
    ]
    for kind, major, minor, access in rules:
        checks: list[bytes | tuple[str, int, int]] = []  # instructions, and ("jne", reg, imm) placeholders
        if kind != "a":
            checks.append(("jne", _R3, _TYPE[kind]))
        denied = 7 & ~sum(_ACCESS[a] for a in access)
        if denied:
            checks.append(_insn(0xBF, _R1, _R2))  # r1 = r2
            checks.append(_insn(0x57, _R1, imm=denied))  # r1 &= what the rule does not grant
            checks.append(("jne", _R1, 0))  # anything left: not this rule
        if major >= 0:
            checks.append(("jne", _R4, major))
        if minor >= 0:
            checks.append(("jne", _R5, minor))
        tail = [_insn(0xB7, _R0, imm=1), _insn(0x95)]  # r0 = 1; exit
        block = checks + tail
        for i, item in enumerate(block):
            if isinstance(item, tuple):
                _, reg, imm = item
                item = _jne(reg, imm, len(block) - i - 1)  # past the rest of this rule
            body.append(item)
        if not checks:  # it allows everything: what would follow is unreachable, which the verifier refuses
            return b"".join(body)
    body += [_insn(0xB7, _R0, imm=0), _insn(0x95)]  # r0 = 0; exit: refused
    return b"".join(body)


def attach_program(cgroup_dir: str, program: bytes) -> None:
    """Load `program` and attach it to the v2 cgroup `cgroup_dir` as its device filter. The
    attachment keeps the program alive until the cgroup is removed."""
    import ctypes

    from minirun import linux
    from minirun.errors import SyscallError

    code = ctypes.create_string_buffer(program, len(program))
    license = ctypes.create_string_buffer(b"Apache-2.0")
    attr = ctypes.create_string_buffer(128)
    struct.pack_into(
        "<IIQQ",
        attr,
        0,
        linux.BPF_PROG_TYPE_CGROUP_DEVICE,
        len(program) // 8,
        ctypes.addressof(code),
        ctypes.addressof(license),
    )
    struct.pack_into("16s", attr, 48, b"minirun_devices")
    try:
        prog = linux.bpf(linux.BPF_PROG_LOAD, attr, "load the device program")
    except SyscallError as exc:
        raise MinirunError(f"devices: {exc.message}") from None
    try:
        cgroup = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            attach = ctypes.create_string_buffer(128)
            struct.pack_into("<IIII", attach, 0, cgroup, prog, linux.BPF_CGROUP_DEVICE, 0)
            linux.bpf(linux.BPF_PROG_ATTACH, attach, cgroup_dir)
        finally:
            os.close(cgroup)
    except SyscallError as exc:
        raise MinirunError(f"devices: {exc.message}") from None
    finally:
        os.close(prog)


def apply(paths: list[tuple[str, int, bool]], rules: list[Rule]) -> None:
    """Enforce `rules` on the container's cgroups: (dir, version, whether v1 has the devices
    controller there). Where a v1 devices controller holds them, that is all, as runc's on such a
    host: the kernel asks it on every open and mknod, after any v2 program, so a program on the v2
    cgroup beside it (the hybrid layout) would refuse nothing more, and loading one costs ~0.6 ms
    of every start. Where v2 is all there is, the program is the policy, and failing to load it
    is an error."""
    v1 = [path for path, version, has_devices in paths if version == 1 and has_devices]
    for path in v1:
        files: dict[str, int] = {}  # one open each: the kernel takes a rule a write
        try:
            for name, line in v1_lines(rules):
                if name not in files:
                    files[name] = os.open(f"{path}/{name}", os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(files[name], line.encode())
                except OSError as exc:
                    raise MinirunError(f"devices: write {line!r} to {path}/{name}: {exc.strerror}") from None
        finally:
            for fd in files.values():
                os.close(fd)
    if v1:
        return
    program = bpf_program(rules)
    for path, version, _ in paths:
        if version == 2:
            attach_program(path, program)
