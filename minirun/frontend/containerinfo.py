"""What the CLI shows of containers: `ps` rows, `inspect` documents, `top` rows. Data only."""

from __future__ import annotations

import os

from minirun import leanjson
from minirun.containers.container import Container
from minirun.errors import MinirunError
from minirun.humanize import ellipsis, epoch_seconds, human_duration, time_ago

NEVER = "0001-01-01T00:00:00Z"


def status_text(container: Container, now: float | None = None) -> str:
    """docker's STATUS column: `Up 5 seconds`, `Exited (0) 3 seconds ago`, `Created`."""
    import time

    now = time.time() if now is None else now
    state = container.state
    if state.get("Status") == "running":
        up = "Up " + human_duration(now - epoch_seconds(state["StartedAt"]))
        if state.get("Paused"):  # docker's State.String: paused before health
            return up + " (Paused)"
        return up + health_suffix(container)
    if state.get("Status") == "restarting":
        ago = human_duration(now - epoch_seconds(state["FinishedAt"]))
        return f"Restarting ({state.get('ExitCode', 0)}) {ago} ago"
    if state.get("Status") == "exited":
        return (
            f"Exited ({state.get('ExitCode', 0)}) " + human_duration(now - epoch_seconds(state["FinishedAt"])) + " ago"
        )
    if state.get("Status") == "dead":
        return "Dead"  # docker's word for a container it cannot account for; rm -f removes it
    return "Created"


def health_suffix(container: Container) -> str:
    """` (healthy)`, ` (unhealthy)`, ` (health: starting)`: docker's, for a container with a check."""
    if not container.config.healthcheck:
        return ""
    from minirun.containers.healthconfig import status_of

    status = status_of(container)
    if status == "none":
        return ""
    return " (health: starting)" if status == "starting" else f" ({status})"


def command_text(container: Container, truncate: bool) -> str:
    command = " ".join(container.config.argv)
    if truncate:
        command = ellipsis(command, 20)
    # docker quotes with Go's strconv.Quote; JSON's string escaping agrees on what matters here
    return leanjson.dumps(command, ensure_ascii=False)


class PsRow:
    """A line of `ps`. A plain class with slots, not a Record: ps makes one a container, and
    Record's general __init__ was a third of a row's cost."""

    __slots__ = ("container", "id", "image", "command", "created", "status", "names", "ports", "size")

    def __init__(
        self,
        container: Container,
        id: str,
        image: str,
        command: str,
        created: str,
        status: str,
        names: str,
        ports: str = "",
        size: str = "",  # ps -s only: it walks the writable layer
    ) -> None:
        self.container, self.id, self.image, self.command = container, id, image, command
        self.created, self.status, self.names, self.ports, self.size = created, status, names, ports, size


def ports_text(container: Container) -> str:
    """docker ps's PORTS (`127.0.0.1:8080->80/tcp`): published ports of a running container."""
    settings = container.state.get("NetworkSettings")
    if not settings or not settings.get("Ports") or container.state.get("Status") != "running":
        return ""
    from minirun.net.portmap import ps_text

    return ps_text(settings["Ports"])


def _networks_text(c: Container) -> str:
    """ps --format's {{.Networks}}: every network it is on, comma-separated, as docker's."""
    first = (c.state.get("NetworkSettings") or {}).get("Network", c.config.network)
    if c.config.networks is None:
        return first
    return ",".join(w["name"] for w in c.config.networks)


def ps_shown(containers: list[Container], all_: bool, last: int = -1) -> list[Container]:
    """Newest first; `last` > 0: only that many of the newest, whatever their state (docker's -n)."""
    shown = [c for c in containers if all_ or last > 0 or c.state.get("Status") in ("running", "restarting")]
    shown.sort(key=lambda c: c.config.created, reverse=True)
    return shown[:last] if last > 0 else shown


def ps_id(container: Container, no_trunc: bool) -> str:
    return container.id if no_trunc else container.id[:12]


def ps_rows(containers: list[Container], all_: bool, no_trunc: bool, last: int = -1) -> list[PsRow]:
    """ps_shown's containers as rows."""
    return [
        PsRow(
            container=c,
            id=ps_id(c, no_trunc),
            image=c.config.image_ref,
            command=command_text(c, truncate=not no_trunc),
            created=time_ago(c.config.created),
            status=status_text(c),
            names=c.name,
            ports=ports_text(c),
        )
        for c in ps_shown(containers, all_, last)
    ]


class PsDocument(dict):
    """ps's row for --format: docker's placeholders as keys, and its one method, `.Label "key"`
    (a label's value, empty when the container has no such label)."""

    labels: dict[str, str] = {}

    def Label(self, key: str) -> str:  # noqa: N802  (docker's placeholder name)
        return self.labels.get(key, "")


def ps_json(row: PsRow) -> PsDocument:
    c = row.container
    document = PsDocument(_ps_fields(row))
    document.labels = c.config.labels
    return document


def _ps_fields(row: PsRow) -> dict:
    # here, not at the top: ps's own table needs neither (each module is a fraction of a ms of its start)
    from minirun.containers.mounts import mount_points
    from minirun.containers.pause import status as pause_status

    c = row.container
    return {
        "Command": row.command,
        "CreatedAt": c.config.created,
        "ID": row.id,
        "Image": row.image,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(c.config.labels.items())),
        "LocalVolumes": str(sum(1 for m in mount_points(c.config) if m.get("Driver") == "local")),
        # docker's: a volume's name, else the source; cut to 15 columns unless --no-trunc
        "Mounts": ",".join(
            (name if len(row.id) == 64 else ellipsis(name, 15))
            for name in (m.get("Name") or m["Source"] for m in mount_points(c.config))
        ),
        "Names": row.names,
        "Networks": _networks_text(c),
        "Ports": row.ports,
        "RunningFor": row.created,
        "Size": row.size,
        "State": pause_status(c),
        "Status": row.status,
    }


def size_text(store, container: Container) -> str:
    """docker's ps -s: the writable layer, then the virtual size (the image's layers with it)."""
    from minirun.humanize import human_size
    from minirun.store.fsutil import tree_size

    own = tree_size(container.upper)
    try:
        image = store.images.get(container.config.image)
        below = store.image_size(image)
    except (MinirunError, OSError):  # its image is gone or damaged: its own layer is still true
        below = 0
    return f"{human_size(own)} (virtual {human_size(own + below)})"


def inspect_container(store, container: Container) -> dict:
    from minirun.containers.mounts import anonymous_destinations, host_config_binds, mount_points
    from minirun.containers.network import inspect_settings
    from minirun.containers.pause import is_paused
    from minirun.containers.pause import status as pause_status
    from minirun.containers.resources import host_config
    from minirun.containers.runconfig import inspect_config, inspect_host_config
    from minirun.net.portmap import port_bindings

    config = container.config
    image_layers = []
    try:
        image = store.images.get(config.image)
        image_layers = [store.layers.diff_dir(d) for d in reversed(image.diff_ids)]
    except Exception:
        pass
    state = container.state
    return {
        "Id": container.id,
        "Created": config.created,
        "Path": config.argv[0] if config.argv else "",
        "Args": config.argv[1:],
        "State": {
            "Status": pause_status(container),
            "Running": state.get("Status") in ("running", "restarting"),  # docker's, while restarting too
            "Paused": is_paused(container),
            "Restarting": state.get("Status") == "restarting",
            "OOMKilled": bool(state.get("OOMKilled", False)),
            "Dead": False,
            "Pid": state.get("Pid", 0) if state.get("Status") == "running" else 0,
            "ExitCode": state.get("ExitCode", 0),
            "Error": state.get("Error", ""),
            "StartedAt": state.get("StartedAt", NEVER),
            "FinishedAt": state.get("FinishedAt", NEVER),
            **_health(container),
        },
        "Image": config.image,
        "LogPath": _log_path(container),
        "Name": "/" + config.name,
        "RestartCount": state.get("RestartCount", 0),
        "HostConfig": {
            "NetworkMode": config.network,
            "PortBindings": port_bindings(config.ports),
            "AutoRemove": config.auto_remove,
            "ReadonlyRootfs": config.readonly,
            "Binds": host_config_binds(config),
            "Tmpfs": dict(spec.partition(":")[::2] for spec in config.tmpfs),
            "CapAdd": config.cap_add or None,
            "CapDrop": config.cap_drop or None,
            "Privileged": config.privileged,
            "SecurityOpt": config.security_opt or None,
            "Devices": [{"PathOnHost": h, "PathInContainer": c, "CgroupPermissions": p} for h, c, p in config.devices],
            "ConsoleSize": list(config.console_size or (0, 0)),
            "LogConfig": {
                "Type": config.log_config.get("Type", "json-file"),
                "Config": config.log_config.get("Config", {}),
            },
            **host_config(config.resources),
            **inspect_host_config(config),
            "RestartPolicy": {
                "Name": config.restart_policy.get("Name") or "no",
                "MaximumRetryCount": config.restart_policy.get("MaximumRetryCount") or 0,
            },
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "LowerDir": ":".join(image_layers),
                "UpperDir": container.upper,
                "WorkDir": container.work,
            },
        },
        "Mounts": mount_points(config),
        "NetworkSettings": inspect_settings(container),
        "Config": {
            "Hostname": config.hostname,
            "User": config.user,
            "Tty": config.tty,
            "OpenStdin": config.interactive,
            "StdinOnce": config.stdin_once,
            "Env": config.env,
            "Cmd": config.argv,
            "Image": config.image_ref,
            "WorkingDir": config.workdir,
            "Labels": config.labels,
            "Volumes": anonymous_destinations(config),
            **inspect_config(config),
            **({"Healthcheck": config.healthcheck} if config.healthcheck else {}),
        },
    }


def _log_path(container: Container) -> str:
    """docker's .LogPath: the json-file driver's log once the container has started (its first
    start creates it), "" otherwise (docker's `local` logs are its own business, `none` has none)."""
    from minirun.containers.logs import log_path

    if container.config.log_config.get("Type", "json-file") != "json-file":
        return ""
    path = log_path(container)
    return path if os.path.exists(path) else ""


def _health(container: Container) -> dict:
    """State.Health, docker's, for a container with a check that has started."""
    if not container.config.healthcheck:
        return {}
    from minirun.containers.healthconfig import read_health

    health = read_health(container)
    return {"Health": health} if health is not None else {}
