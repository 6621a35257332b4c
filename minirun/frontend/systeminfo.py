"""What the CLI shows of minirun and its host: `version` and `info` documents, as docker names
their fields (the keys of `docker version --format '{{json .}}'` and `docker info`). Data only;
app_system.py renders it."""

from __future__ import annotations

import os
import platform
import sys

VERSION = "0.1.0"  # pyproject.toml's
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x"}


def architecture() -> str:
    """Docker's (Go's) name for the machine: amd64, arm64, ..."""
    machine = platform.machine()
    return GOARCH.get(machine, machine)


def version_document() -> dict:
    """minirun has no daemon: the "server" is this same program, run by the same command."""
    kernel = os.uname().release
    client = {
        "Platform": {"Name": "minirun"},
        "Version": VERSION,
        "ApiVersion": "",  # no Engine API yet
        "PythonVersion": platform.python_version(),
        "Os": "linux",
        "Arch": architecture(),
    }
    server = {
        "Platform": {"Name": "minirun"},
        "Version": VERSION,
        "Os": "linux",
        "Arch": architecture(),
        "KernelVersion": kernel,
        "Components": [{"Name": "Engine", "Version": VERSION, "Details": {"KernelVersion": kernel}}],
    }
    return {"Client": client, "Server": server}


def info_document(store) -> dict:
    """docker info's fields that mean something here."""
    from minirun.containers import logconfig
    from minirun.containers.container import Containers
    from minirun.runtime import cgroups

    containers = Containers(store).all()
    states = [c.state.get("Status") for c in containers]
    driver, _ = logconfig.store_defaults(store.root)
    layout = cgroups.layout()
    security = ["name=seccomp,profile=builtin"] if kernel_has_seccomp() else []
    if layout == "v2":
        security.append("name=cgroupns")
    return {
        "ID": "",
        "Containers": len(containers),
        "ContainersRunning": states.count("running"),
        "ContainersPaused": 0,
        "ContainersStopped": len(containers) - states.count("running"),
        "Images": len(store.images.all()),
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", backing_filesystem(store.root)], ["Supports d_type", "true"]],
        "LoggingDriver": driver or logconfig.DEFAULT_DRIVER,
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2" if layout == "v2" else "1",
        "KernelVersion": os.uname().release,
        "OperatingSystem": operating_system(),
        "OSType": "linux",
        "Architecture": platform.machine(),
        "NCPU": os.cpu_count() or 1,
        "MemTotal": memory_total(),
        "DockerRootDir": store.root,
        "Name": os.uname().nodename,
        "ServerVersion": VERSION,
        "SecurityOptions": security,
        "DefaultRuntime": "minirun",
        "Debug": False,
    }


def backing_filesystem(path: str) -> str:
    """The type of the filesystem under `path`, from /proc/self/mounts (the longest mount point
    that holds it); docker says e.g. extfs, xfs, btrfs."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                point = fields[1].replace("\\040", " ")
                if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        pass
    return {"ext2": "extfs", "ext3": "extfs", "ext4": "extfs"}.get(kind, kind)


def kernel_has_seccomp() -> bool:
    try:
        with open("/proc/self/status") as f:
            return any(line.startswith("Seccomp:") for line in f)
    except OSError:
        return False


def operating_system() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == "PRETTY_NAME":
                    return value.strip('"')
    except OSError:
        pass
    return sys.platform


def memory_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
