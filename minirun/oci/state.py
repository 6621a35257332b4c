"""The state directory, runc's /run/runc: one directory per container under --root, holding
state.json (the OCI state and what the runtime keeps privately) and, between `create` and
`start`, the exec fifo PID 1 waits on. A status is never stored: it is read from the kernel
(PID 1 alive by pid and start time, the fifo still there, the cgroup frozen)."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from minirun import procs
from minirun.atomicfile import atomic_write
from minirun.errors import MinirunError, NotFound

DEFAULT_ROOT = "/run/minirun-oci"
FIFO = "exec.fifo"
_ID = re.compile(r"^[\w+.-]+$")


class State:
    """One container's directory and its state.json."""

    def __init__(self, root: str, container_id: str) -> None:
        check_id(container_id)
        self.id = container_id
        self.dir = os.path.join(root, container_id)
        self.data: dict[str, Any] = {}

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, FIFO)

    def make(self) -> None:
        os.makedirs(os.path.dirname(self.dir), 0o711, exist_ok=True)
        try:
            os.mkdir(self.dir, 0o711)
        except FileExistsError:
            raise MinirunError(f"container with id exists: {self.id}") from None

    def load(self) -> State:
        try:
            with open(os.path.join(self.dir, "state.json"), encoding="utf-8") as f:
                self.data = json.load(f)
        except FileNotFoundError:
            raise NotFound(f"container does not exist: {self.id}") from None
        except (OSError, ValueError) as exc:
            raise MinirunError(f"container {self.id}: reading its state: {exc}") from None
        return self

    def save(self) -> None:
        atomic_write(os.path.join(self.dir, "state.json"), json.dumps(self.data).encode(), mode=0o600, durable=False)

    @property
    def pid(self) -> int:
        return int(self.data.get("pid") or 0)

    def alive(self) -> bool:
        return procs.is_alive(self.pid, self.data.get("pid_start"))

    def status(self) -> str:
        if not self.pid:
            return "creating" if not self.data.get("failed") else "stopped"
        if not self.alive():
            return "stopped"
        if os.path.exists(self.fifo):
            return "created"
        if self.frozen():
            return "paused"
        return "running"

    def frozen(self) -> bool:
        from minirun.runtime import freezer

        try:
            return freezer.cgroup_frozen(*freezer.freezer_at(self.data.get("cgroup", ""), self.id))
        except MinirunError:
            return False

    def oci(self) -> dict[str, Any]:
        """The state the runtime spec defines (runc's field order), with runc's extras."""
        status = self.status()
        state: dict[str, Any] = {
            "ociVersion": self.data.get("ociVersion", ""),
            "id": self.id,
            "pid": self.pid if status != "stopped" else 0,
            "status": status,
            "bundle": self.data.get("bundle", ""),
            "rootfs": self.data.get("rootfs", ""),
            "created": self.data.get("created", ""),
            "owner": "",
        }
        if self.data.get("annotations"):
            state["annotations"] = self.data["annotations"]
        return state


def check_id(container_id: str) -> None:
    if not container_id:
        raise MinirunError("container id cannot be empty")
    if container_id in (".", "..") or not _ID.match(container_id):
        raise MinirunError(f"invalid container id format: {container_id}")


def all_ids(root: str) -> list[str]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    return [n for n in names if os.path.isfile(os.path.join(root, n, "state.json"))]
