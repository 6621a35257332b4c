"""`minirun system check [--repair]`: the store and what minirun keeps on the host, checked
against each other, as fsck checks a filesystem (none of the peers has one).

- every layer: its record, its short link, and its bytes against its diff_id (the exact tar is
  rebuilt from its tar-split and hashed);
- every image: its config, its layers, the tags naming it;
- every container: its record, its image, its state against its processes and cgroups;
- debris and orphans: temp dirs and half-made records, layers no image uses, dangling links,
  empty container cgroups, address bookings and published ports whose container is gone, and
  mounts of the store on the host.

Each finding says what is wrong with what; `--repair` removes what is orphaned or broken beyond
use (a damaged tag file is moved aside, never thrown away) and reports each repair. Things that
may belong to another store on the same host (a cgroup with processes, a veth) are only reported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial

from minirun.errors import DamagedRecord, MinirunError, NotFound


class Finding:
    __slots__ = ("what", "repair")

    def __init__(self, what: str, repair: Callable[[], object] | None = None) -> None:
        self.what, self.repair = what, repair


def check(store, verify_layers: bool = True) -> tuple[list[Finding], dict[str, int]]:
    """Every problem found, and how many of each kind of thing were checked."""
    findings: list[Finding] = []
    counts = {"layers": 0, "images": 0, "containers": 0}
    used_layers = _check_images(store, findings, counts)
    _check_layers(store, findings, counts, used_layers, verify_layers)
    known = _check_containers(store, findings, counts)
    _check_host(store, findings, known)
    return findings, counts


# -- images -------------------------------------------------------------------------------------------


def _check_images(store, findings: list[Finding], counts: dict[str, int]) -> set[str]:
    images = store.images
    used: set[str] = set()
    present = set()
    for image_id in images.ids():
        counts["images"] += 1
        try:
            image = images.get(image_id)
        except DamagedRecord as exc:
            findings.append(
                Finding(f"damaged image {image_id}: {exc.message}", partial(_delete_image, store, image_id))
            )
            continue
        except NotFound:
            continue
        missing = [d for d in image.diff_ids if not store.layers.exists(d)]
        if missing:
            findings.append(
                Finding(
                    f"broken image {image_id}: its layer {missing[0]} is not in the store",
                    partial(_delete_image, store, image_id),
                )
            )
            continue
        present.add(image_id)
        used.update(image.diff_ids)
    try:
        tags = images.read_tags()
    except DamagedRecord as exc:
        findings.append(Finding(exc.message, lambda: _set_aside(images.tags_path)))
        return used
    for name, target in sorted(tags.items()):
        if target not in present:
            findings.append(
                Finding(
                    f"tag {name} names image {target}, which is not in the store",
                    partial(_locked, store, partial(images.untag, name)),
                )
            )
    return used


def _delete_image(store, image_id: str) -> None:
    _locked(store, lambda: store.images.delete(image_id))


def _set_aside(path: str) -> None:
    """Keep a damaged file for whoever wants to read it, out of the store's way."""
    os.replace(path, f"{path}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")


def _listing(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []


def _locked(store, work: Callable[[], object]) -> None:
    with store.locked():
        work()


# -- layers -------------------------------------------------------------------------------------------


def _check_layers(store, findings: list[Finding], counts: dict[str, int], used: set[str], verify: bool) -> None:
    from minirun.store.fsutil import remove_tree
    from minirun.store.layers import TMP_PREFIX

    layers = store.layers
    for name in _listing(layers.dir):
        path = os.path.join(layers.dir, name)
        if name.startswith(TMP_PREFIX):
            findings.append(
                Finding(
                    f"unfinished layer {path} (a load, pull, build or commit cut short)",
                    lambda: _locked(store, layers.sweep),
                )
            )
            continue
        diff_id = "sha256:" + name
        if not os.path.exists(os.path.join(path, "meta.json")):
            findings.append(
                Finding(f"layer debris {path} (no record)", partial(_locked, store, partial(remove_tree, path)))
            )
            continue
        counts["layers"] += 1
        problem = _layer_problem(layers, diff_id, verify)
        if problem is None and diff_id in used:
            continue
        what = f"damaged layer {diff_id}: {problem}" if problem else f"unused layer {diff_id} (no image has it)"
        users = _images_using(store, diff_id) if problem else []
        findings.append(
            Finding(
                what + (f"; images using it: {', '.join(users)}" if users else ""),
                partial(_remove_layer, store, diff_id, users),
            )
        )
    for link in _listing(layers.links):
        full = os.path.join(layers.links, link)
        if not os.path.exists(full):
            findings.append(Finding(f"dangling link {full}", partial(os.unlink, full)))


def _layer_problem(layers, diff_id: str, verify: bool) -> str | None:
    try:
        layers.meta(diff_id)
        if not os.path.lexists(layers.short_link(diff_id)):
            return "its short link is missing"
        if verify:
            with layers.open_tar(diff_id) as tar:
                while tar.read(1 << 20):
                    pass
    except (MinirunError, OSError) as exc:
        return getattr(exc, "message", None) or str(exc)
    return None


def _images_using(store, diff_id: str) -> list[str]:
    return [image.id for image in store.images.all() if diff_id in image.diff_ids]


def _remove_layer(store, diff_id: str, images: list[str]) -> None:
    """A layer no image can use any more, with the images that would be broken without it."""

    def work() -> None:
        for image_id in images:
            if store.containers_using(image_id):
                raise MinirunError(f"layer {diff_id} is damaged but a container uses image {image_id}: remove it first")
            store.images.delete(image_id)
        store.layers.remove(diff_id)

    _locked(store, work)


# -- containers ---------------------------------------------------------------------------------------


def _check_containers(store, findings: list[Finding], counts: dict[str, int]) -> set[str]:
    """Every container of the store (and its cgroups); returns their ids, whose cgroups the host
    check then leaves to this one."""
    from minirun.containers import lifecycle, liveness
    from minirun.containers.container import Containers
    from minirun.procs import is_alive
    from minirun.runtime import cgroups

    containers = Containers(store)
    known: set[str] = set()
    for name in _listing(containers.dir):
        path = os.path.join(containers.dir, name)
        if len(name) != 64 or not os.path.exists(os.path.join(path, "config.json")):
            known.add(name)  # its cgroups go with it
            findings.append(Finding(f"container debris {path} (no record)", partial(_remove_debris, store, path, name)))
            continue
        counts["containers"] += 1
        known.add(name)
        container = containers.load_or_dead(name)
        state = container.state
        if liveness.is_dead(container):
            findings.append(
                Finding(
                    f"dead container {name}: {state.get('Error')}",
                    partial(lifecycle.remove, containers, container, force=True),
                )
            )
            continue
        if state.get("Status") == "running":
            pid1 = is_alive(state.get("Pid", 0), state.get("PidStartTime"))
            if not pid1 and not liveness.exit_writer_alive(state):
                findings.append(
                    Finding(
                        f"container {name} is recorded as running but its processes are gone",
                        partial(_record_exit, containers, container),
                    )
                )
        elif cgroups.existing_paths(name):
            findings.append(Finding(f"stopped container {name} still has cgroups", partial(_remove_cgroups, name)))
        if container.config.image and container.config.image not in store.images.ids():
            findings.append(Finding(f"container {name} uses image {container.config.image}, which is not in the store"))
    return known


def _remove_debris(store, path: str, container_id: str) -> None:
    from minirun.store.fsutil import remove_tree

    _remove_cgroups(container_id)
    _locked(store, lambda: remove_tree(path))


def _record_exit(containers, container) -> None:
    from minirun.containers import liveness

    liveness.refresh(containers, container, reload=True, record=True)


def _remove_cgroups(container_id: str) -> None:
    from minirun.runtime import cgroups

    stayed = cgroups.remove(cgroups.existing_paths(container_id))
    if stayed:
        raise MinirunError(f"cgroups still busy: {', '.join(stayed)}")


# -- what minirun keeps on the host ----------------------------------------------------------------------


def _check_host(store, findings: list[Finding], known: set[str]) -> None:
    _check_cgroups(findings, known)
    _check_bookings(store, findings)
    _check_ports(store, findings)
    _check_mounts(store, findings)


def _check_cgroups(findings: list[Finding], known: set[str]) -> None:
    """The cgroups under every hierarchy's `minirun/` of no container of this store, one finding
    per container id."""
    from minirun.runtime import cgroups

    found: dict[str, list[str]] = {}
    for hierarchy in cgroups.hierarchies():
        parent = f"{hierarchy.mount}/{cgroups.PARENT}"
        try:
            ids = os.listdir(parent)
        except FileNotFoundError:
            continue
        for container_id in ids:
            if container_id == cgroups.PROXIES:  # the port proxies', kept as PARENT itself is
                continue
            if container_id not in known and os.path.isdir(f"{parent}/{container_id}"):
                inner = f"{parent}/{container_id}/{cgroups.INNER}"  # its processes' (cgroups.py), first
                found.setdefault(container_id, []).extend([inner] if os.path.isdir(inner) else [])
                found[container_id].append(f"{parent}/{container_id}")
    for container_id, paths in sorted(found.items()):
        if any(cgroups.members(path) for path in paths):
            findings.append(
                Finding(
                    f"cgroups of {container_id} hold processes but no running container of this "
                    "store (another store's?)"
                )
            )
        else:
            findings.append(
                Finding(
                    f"empty cgroups of {container_id} in {len(paths)} hierarchies (no running container)",
                    partial(_rmdir_all, paths),
                )
            )


def _rmdir_all(paths: list[str]) -> None:
    for path in paths:
        _rmdir(path)


def _rmdir(path: str) -> None:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _check_bookings(store, findings: list[Finding]) -> None:
    """Addresses booked for a container of this store that is gone, or for a store that is gone
    (another store's own are its business: it frees them at its next start on that bridge)."""
    from minirun.net.networks import HOST_DIR, AddressBook

    try:
        bridges = sorted(os.listdir(os.path.join(HOST_DIR, "bridges")))
    except FileNotFoundError:
        return
    for bridge in bridges:
        book = AddressBook(bridge)
        for entry in book.entries():
            owner = entry.get("store", "/nonexistent")
            record = os.path.join(owner, "containers", entry.get("container", "-"), "config.json")
            if (owner == store.root or not os.path.isdir(owner)) and not os.path.exists(record):
                findings.append(
                    Finding(
                        f"address {entry['ip']} on {bridge} is booked for a container that is gone",
                        partial(_release, book, entry),
                    )
                )


def _release(book, entry: dict) -> None:
    with book.locked():
        book.release(entry.get("store", ""), entry.get("container", ""))


def _check_ports(store, findings: list[Finding]) -> None:
    """Published ports whose container is not running, of this store or of none (another store's
    are its business, as its bookings are: one of them may be stopping now)."""
    from minirun.net import portmap
    from minirun.net.networks import owner_of

    try:
        elements = portmap.list_elements() or []
    except (MinirunError, OSError):
        return  # no nft here: nothing of ours to check
    for element in elements:
        proto, host_ip, host_port, address, port = element
        if portmap.in_use(address):
            continue
        owner = (owner_of(address) or {}).get("store", store.root)
        if owner != store.root and os.path.isdir(owner):
            continue
        findings.append(
            Finding(
                f"published port {host_ip or '0.0.0.0'}:{host_port}/{proto} leads to {address}:{port}, "
                "whose container is not running",
                partial(portmap.unpublish, address),
            )
        )


def _check_mounts(store, findings: list[Finding]) -> None:
    from minirun import linux

    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in reversed(points):
        if point == store.root or point.startswith(store.root + "/"):
            findings.append(
                Finding(
                    f"mount on the host at {point} (the store's mounts live in containers' namespaces)",
                    partial(linux.umount2, point, linux.MNT_DETACH),
                )
            )


# -- the verb -----------------------------------------------------------------------------------------------


def run_check(store, repair: bool, verify_layers: bool = True) -> tuple[list[str], int]:
    """Lines to print and the exit code: 0 when nothing is wrong (or everything was repaired)."""
    findings, counts = check(store, verify_layers)
    lines = [f"checked {counts['layers']} layers, {counts['images']} images, {counts['containers']} containers"]
    left = 0
    for finding in findings:
        if not repair or finding.repair is None:
            lines.append(f"problem: {finding.what}")
            left += 1
            continue
        try:
            finding.repair()
            lines.append(f"repaired: {finding.what}")
        except (MinirunError, OSError) as exc:
            lines.append(f"not repaired: {finding.what}: {getattr(exc, 'message', None) or exc}")
            left += 1
    lines.append("no problems" if not findings else f"{len(findings)} problems, {left} left")
    return lines, 0 if left == 0 else 1
