"""Per-container kernel settings docker's `run` takes: `--ulimit` (setrlimit(2) on the process
before exec) and `--sysctl` (written into /proc/sys from inside the container's own namespaces).

Parsing and the checks are pure, for the CLI to refuse a bad value before anything is created.
The writers run in PID 1 (and in an exec'd process, for the ulimits) while it is still root with
every capability, before lock_down: raising a hard limit needs CAP_SYS_RESOURCE.

Only namespaced sysctls are allowed, as docker allows them: the IPC ones (kernel.msg*, sem, shm*,
fs.mqueue.*) in a container with its own IPC namespace, net.* in one with its own network
namespace. Any other key would change the host's kernel for everyone.
"""

from __future__ import annotations

import os

from minirun.errors import MinirunError, UsageError

TYPE_CHECKING = False  # not typing's: importing typing costs ~6 ms on the start path
if TYPE_CHECKING:
    from typing import Any

    Ulimit = dict[str, Any]  # docker's {"Name": str, "Soft": int, "Hard": int}

# docker's --ulimit names (go-units) -> RLIMIT_* (asm-generic/resource.h), so parsing needs no `resource`
ULIMITS: dict[str, int] = {
    "cpu": 0,
    "fsize": 1,
    "data": 2,
    "stack": 3,
    "core": 4,
    "rss": 5,
    "nproc": 6,
    "nofile": 7,
    "memlock": 8,
    "locks": 10,
    "sigpending": 11,
    "msgqueue": 12,
    "nice": 13,
    "rtprio": 14,
    "rttime": 15,
}
# what apply_ulimits sets: docker's names, and RLIMIT_AS, which an OCI bundle may limit (docker's --ulimit not)
RLIMITS: dict[str, int] = {**ULIMITS, "as": 9}
UNLIMITED = -1  # docker's spelling of RLIM_INFINITY

# The IPC namespace's sysctls (docker's list), and prefixes of namespaced families
IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)
IPC_PREFIX = "fs.mqueue."
NET_PREFIX = "net."


def parse_ulimit(spec: str) -> Ulimit:
    """`name=soft[:hard]` -> docker's {"Name", "Soft", "Hard"} (hard defaults to soft; -1 is
    unlimited)."""
    name, sep, values = spec.partition("=")
    if not sep:
        raise UsageError(f"invalid ulimit argument: {spec}")
    if name not in ULIMITS:
        raise UsageError(f"invalid ulimit type: {name}")
    parts = values.split(":")
    if len(parts) > 2:
        raise UsageError(f"too many limit value arguments - {values}, can only have up to two, `soft[:hard]`")
    soft = _limit(parts[0], spec)
    hard = _limit(parts[1], spec) if len(parts) == 2 else soft
    if _comparable(soft) > _comparable(hard):
        raise UsageError(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return {"Name": name, "Hard": hard, "Soft": soft}


def _limit(text: str, spec: str) -> int:
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()) or int(text) < UNLIMITED or int(text) >= 2**63:
        raise UsageError(f"invalid ulimit value {text!r} in {spec!r}: a number, or -1 for unlimited")
    return int(text)


def _comparable(value: int) -> float:
    return float("inf") if value == UNLIMITED else value


def apply_ulimits(ulimits: list[Ulimit]) -> None:
    """setrlimit each; the caller imported `resource` (a C extension) before pivot_root, while
    the host's lib-dynload was still reachable."""
    import resource

    for limit in ulimits:
        name = limit["Name"]
        soft, hard = (resource.RLIM_INFINITY if v == UNLIMITED else v for v in (limit["Soft"], limit["Hard"]))
        try:
            resource.setrlimit(RLIMITS[name], (soft, hard))
        except (OSError, ValueError) as exc:
            raise MinirunError(f"setrlimit {name}={limit['Soft']}:{limit['Hard']}: {exc}") from None


def parse_sysctl(spec: str) -> tuple[str, str]:
    """`key=value` with a key docker allows (namespaced); pure."""
    key, sep, value = spec.partition("=")
    if not sep or not key or not (key in IPC_SYSCTLS or key.startswith((IPC_PREFIX, NET_PREFIX))):
        raise UsageError(f"sysctl '{spec}' is not allowed")
    # a key names a file under /proc/sys: no way out of its family ("net.x/../../kernel/...")
    if "/" in key or "" in key.split(".") or not key.isascii() or not key.isprintable() or " " in key:
        raise UsageError(f"sysctl '{spec}' is not allowed: {key!r} is no sysctl name")
    return key, value


def check_sysctls(sysctls: dict[str, str], network: str, ipc_mode: str) -> None:
    """The namespace each key belongs to must be the container's own (runc's rule): net.* not
    with --network host or container:NAME, the IPC keys not with --ipc host. Pure."""
    for key in sysctls:
        if key.startswith(NET_PREFIX) and (network == "host" or network.startswith("container:")):
            raise UsageError(
                f"sysctl {key!r} is not allowed with --network {network}: the network namespace is not the container's own"
            )
        if not key.startswith(NET_PREFIX) and ipc_mode == "host":
            raise UsageError(f"sysctl {key!r} is not allowed with --ipc host: the IPC namespace is the host's")


def sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def write_sysctls(sysctls: dict[str, str], network: str, ipc_mode: str) -> None:
    """In PID 1, after it unshared its namespaces (and made eth0): a /proc/sys/net or IPC file
    acts on the namespace of the process that opens it, so the host's /proc still serves."""
    check_sysctls(sysctls, network, ipc_mode)  # a record edited by hand gets the same checks
    for key, value in sysctls.items():
        parse_sysctl(f"{key}={value}")
        path = sysctl_path(key)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise MinirunError(f"sysctl {key}: no such key in this kernel ({path})") from None
        except OSError as exc:
            raise MinirunError(f"sysctl {key}: open {path}: {exc.strerror}") from None
        try:
            os.write(fd, value.encode())
        except OSError as exc:
            raise MinirunError(f"sysctl {key}={value}: {exc.strerror}") from None
        finally:
            os.close(fd)
