"""What a container is allowed, as docker's options say it: capabilities (--cap-add, --cap-drop,
--privileged) and --security-opt (seccomp=PROFILE|unconfined|builtin, no-new-privileges[=true|false]).

Pure and cheap: the CLI checks options here before anything is created, and every start reads
the container's record through it. security.py carries the result out on the process.
"""

from __future__ import annotations

from minirun.errors import MinirunError, UsageError

TYPE_CHECKING = False  # not typing's: importing typing costs ~6 ms on the start path
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Protocol

    from minirun.runtime.seccomp import Program

    class Confinement(Protocol):
        """What for_container reads of a container's record (containers' ContainerConfig)."""

        @property
        def cap_add(self) -> list[str]: ...
        @property
        def cap_drop(self) -> list[str]: ...
        @property
        def privileged(self) -> bool: ...
        @property
        def security_opt(self) -> list[str]: ...


# linux/capability.h
CAPABILITIES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

# docker's default set (moby oci/caps/defaults.go: 0xa80425fb), in its order, less the three podman
# drops (containers-common's default_capabilities; podman 4.3 here: CapEff 0x800405fb), as every
# default wall of either is ours: CAP_NET_RAW (forged frames on a shared bridge: ARP spoofing a
# neighbour, any source address), CAP_MKNOD (device nodes; the devices policy still guards their
# use) and CAP_AUDIT_WRITE (records in the host's audit log). `--cap-add` gives each back.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
)
ALL = "ALL"


def capability_number(name: str) -> int:
    """`CAP_NET_RAW`, `NET_RAW` or `net_raw` -> 13."""
    try:
        return CAPABILITIES[_canonical(name)]
    except KeyError:
        raise MinirunError(f"unknown capability: {name!r}") from None


def capability_mask(names: Iterable[str]) -> int:
    """The bit mask /proc/PID/status prints for a set (CapEff, CapBnd...)."""
    mask = 0
    for name in names:
        mask |= 1 << capability_number(name)
    return mask


def _canonical(name: str) -> str:
    key = name.upper()
    return key if key.startswith("CAP_") or key == ALL else f"CAP_{key}"


def normalize_capabilities(names: Iterable[str]) -> list[str]:
    """--cap-add/--cap-drop values as docker records them: CAP_-prefixed upper case, or ALL."""
    result = []
    for name in names:
        key = _canonical(name.strip())
        if key != ALL and key not in CAPABILITIES:
            raise UsageError(f'unknown capability: "{key}"')
        if key not in result:
            result.append(key)
    return result


def all_capabilities(last_cap: int | None = None) -> list[str]:
    """Every capability the running kernel has (/proc/sys/kernel/cap_last_cap)."""
    if last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                last_cap = int(f.read())
        except (OSError, ValueError):
            last_cap = max(CAPABILITIES.values())
    return [name for name, number in CAPABILITIES.items() if number <= last_cap]


def container_capabilities(
    cap_add: list[str], cap_drop: list[str], privileged: bool, last_cap: int | None = None
) -> list[str]:
    """docker's rules: privileged gets all; ALL in --cap-add means all but the dropped; ALL in
    --cap-drop means only the added; else the defaults, minus the dropped, plus the added."""
    if privileged:
        return all_capabilities(last_cap)
    if ALL in cap_add:
        return [c for c in all_capabilities(last_cap) if c not in cap_drop]
    if ALL in cap_drop:
        return [c for c in cap_add if c != ALL]
    caps = [c for c in DEFAULT_CAPABILITIES if c not in cap_drop]
    return caps + [c for c in cap_add if c not in caps]


# -- --security-opt ----------------------------------------------------------------------------------

# accepted and without effect on a host without those LSMs, as docker accepts them there
_NO_LSM = ("apparmor=", "label=")


def parse_security_opts(opts: list[str], inline_profiles: bool = False) -> list[str]:
    """--security-opt values as the container records them (docker's HostConfig.SecurityOpt): a
    profile file is read now and kept as its compact JSON, so a later start does not depend on it.
    `inline_profiles`: a seccomp value is the profile's JSON itself, as docker's CLI sends the
    file's content to the Engine API (whose server never reads a path a client names)."""
    result = []
    for opt in opts:
        # docker splits at the first "=", or at the first ":" (the old spelling) when there is none
        key, sep, value = opt.partition("=") if "=" in opt else opt.partition(":")
        if key == "no-new-privileges":
            if sep and value not in ("true", "false"):
                raise UsageError(f"invalid --security-opt {opt!r}: no-new-privileges takes true or false")
            result.append(f"no-new-privileges={value or 'true'}")
        elif key == "seccomp" and value:
            from minirun.runtime import seccomp

            if value in (seccomp.UNCONFINED, seccomp.BUILTIN):  # docker's two names, kept as given
                result.append(f"seccomp={value}")
                continue
            from minirun.runtime import seccompcompile  # a profile's own reader: 35 KB of bytecode

            if inline_profiles:
                result.append(f"seccomp={seccompcompile.compact_profile(value, 'HostConfig.SecurityOpt')}")
            else:
                result.append(f"seccomp={seccompcompile.read_profile(value)}")
        elif f"{key}=" in _NO_LSM and value:
            result.append(f"{key}={value}")
        else:
            raise UsageError(f"invalid --security-opt: {opt!r}")
    return result


def no_new_privileges(security_opt: list[str]) -> bool:
    """On unless the container says no-new-privileges=false (minirun's default; docker's is off)."""
    value = True
    for opt in security_opt:
        if opt.startswith("no-new-privileges="):
            value = opt.endswith("=true")
    return value


def seccomp_unconfined(security_opt: list[str], privileged: bool) -> bool:
    return privileged or "seccomp=unconfined" in security_opt


def for_container(config: Confinement, seccomp_dir: str) -> tuple[list[str], bool, Program | None]:
    """(capabilities, no_new_privileges, seccomp.Program or None) of a container's processes,
    from its record (ContainerConfig); the program comes from the store's cache in `seccomp_dir`."""
    caps = container_capabilities(config.cap_add, config.cap_drop, config.privileged)
    program = None
    if not seccomp_unconfined(config.security_opt, config.privileged):
        from minirun.runtime import seccomp

        program = seccomp.program_for(seccomp_dir, seccomp.profile_text(config.security_opt), caps)
    return caps, no_new_privileges(config.security_opt), program
