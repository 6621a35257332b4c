"""An OCI runtime's side of a container minirun handed it (`run --runtime`): which executable,
the --root minirun gives it (never the runtime's default), and its verbs. Apart from
ociruntime.py, which runs the container, so that `rm` can ask the runtime to forget one whose
run was killed without importing the whole run."""

from __future__ import annotations

import os
import shutil
import sys

from minirun import hostwide
from minirun.errors import MinirunError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.containers.container import Container


def find_runtime(name: str) -> str:
    """The runtime's executable: a path, a name on PATH, or minirun-oci beside this Python."""
    if "/" in name:
        path = os.path.abspath(name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    else:
        found = shutil.which(name)
        if found:
            return found
        beside = os.path.join(os.path.dirname(sys.executable), name)
        if name == "minirun-oci" and os.access(beside, os.X_OK):
            return beside
    raise UsageError(f"unknown or invalid runtime name: {name}")


def forget(container: Container) -> None:
    """rm of a container an OCI runtime ran: the runtime's `delete --force` (its state, its
    cgroups), which the run does itself at its end, unless it was killed first. Best effort."""
    try:
        runtime = find_runtime(container.config.runtime)
    except MinirunError:  # gone from PATH since: nothing of it to ask
        return
    state = runtime_state(container, runtime)
    if os.path.isdir(state.root):
        state.delete()


def runtime_state(container: Container, runtime: str) -> RuntimeState:
    """The runtime's view of the container: under a --root of minirun's, one per runtime."""
    root = os.path.join(hostwide.RUN_DIR, "runtimes", os.path.basename(runtime))
    log = os.path.join(container.dir, "bundle", "runtime.log")
    return RuntimeState(runtime, root, container.id, log if os.path.isdir(os.path.dirname(log)) else os.devnull)


class RuntimeState:
    """One container of an OCI runtime, under a --root of minirun's (never the runtime's default)."""

    def __init__(self, path: str, root: str, container_id: str, log: str) -> None:
        self.path, self.root, self.id, self.log = path, root, container_id, log
        self.name = os.path.basename(path)

    def argv(self, verb: str, *args: str) -> list[str]:
        return [self.path, "--root", self.root, "--log", self.log, "--log-format", "json", verb, *args, self.id]

    def call(self, verb: str, *args: str) -> None:
        import subprocess

        done = subprocess.run(self.argv(verb, *args), stdin=subprocess.DEVNULL, capture_output=True, check=False)
        if done.returncode != 0:
            raise MinirunError(self.failed(verb, self.error(done.stderr.decode(errors="replace"))))

    def failed(self, verb: str, message: str) -> str:
        return message if message.startswith(f"{self.name} {verb}") else f"{self.name} {verb}: {message}"

    def delete(self) -> None:
        try:
            self.call("delete", "--force")
        except MinirunError:
            pass

    def error(self, stderr: str = "") -> str:
        """The runtime's own words: the last error of its --log, else of its stderr."""
        import json

        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") == "error":
                return str(entry.get("msg", "")).strip()
        text = [line for line in stderr.splitlines() if line.strip()]
        return text[-1].strip() if text else "failed"
