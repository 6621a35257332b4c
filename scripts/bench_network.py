#!/usr/bin/env python3
"""Benchmark what networking adds to a container start: `minirun run --rm busybox true` with
--network none, with --network bridge (the default) and with a published port, beside
`podman run --rm` with --network none and --network bridge, in one run.

    .venv/bin/python scripts/bench_network.py [--runs 20]

Target (issue 7): --network bridge adds at most 30 ms to minirun's start (median bridge - median
none). Prepared once, untimed, in a temporary directory: a fresh minirun store (`--root`), minirun
byte-compiled first (as scripts/setup.sh does), the busybox image built by the first run, and one
warm-up run per command (the first bridge run makes this run's bridge, mb<hex>0: minirun runs
with host-wide names of this run's own, scripts/benchenv.py, never the host's minirun0, table ip
minirun or /run/minirun); podman's own storage with the same busybox tar imported, run with the
flags these machines need (PEERS.md). The timed runs are interleaved round-robin, the order rotating each round, so machine
noise hits every command alike. Each time is one command's wall time from this process.

Left behind: nothing of minirun's (no container, no booked address, no published port) and the
leftovers line checks it; then this run's bridge, nft table, run dir and cgroup parents are
removed. podman's network backend (netavark, or CNI on older podman) changes the host for
--network bridge (iptables-nft tables `ip nat`/`ip filter` with NETAVARK or CNI chains, its bridge
podman0 or cni-podman0, CNI's /var/lib/cni, /run/netns mounted on itself, net.ipv4.ip_forward=1): what this run made
is undone at the end, and every interface gets back the per-interface forwarding it had before
(resetting ip_forward clears it everywhere; bridges made meanwhile, such as other minirun
sessions', get it on, as minirun makes them).

A measurement, not a test: exits 0 whatever the figures, 1 if a command failed or something was
left behind. Shares its helpers with scripts/bench_start.py. Standard library only. Run as root.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_start import (  # noqa: E402  (the script's own directory, put on the path just above)
    Minirun,
    Podman,
    Tool,
    add_mount_flag,
    cgroup_dirs,
    cleanup_tools,
    defer_signals,
    mounts,
    podman_peer,
    prepare_rootfs,
    prepare_tools,
    remove_side_paths,
    remove_temp_dir,
    side_paths_present,
    time_round_robin,
    unfix_hybrid_cgroups,
    version,
)
from benchenv import HostNames, private_names  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TARGET_ADDED_S = 0.030
# what podman's --network bridge may make outside its dirs: its default network's bridge (netavark's
# name, CNI's), CNI's address bookings and the dir of named network namespaces
PEER_LINKS = ("podman0", "cni-podman0")
PEER_DIRS = ("/var/lib/cni", "/run/netns")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PodmanBridge(Tool):
    """`podman run --rm --network bridge`, on the storage the --network none tool prepared."""

    def __init__(self, none: Podman):
        cmd = list(none.cmd)
        cmd[cmd.index("--network") + 1] = "bridge"
        super().__init__("podman run --rm --network bridge", cmd)

    def prepare(self) -> None:
        self.once(-1)  # warm-up: netavark makes its bridge


def minirun_leftovers(root: Path, names: HostNames) -> list[str]:
    found = []
    cdir = root / "containers"
    if cdir.is_dir():
        found += [f"minirun container dir {c.name}" for c in cdir.iterdir()]
    bridges = Path(names.run_dir) / "bridges"
    for bridge in bridges.iterdir() if bridges.is_dir() else []:
        for entry in bridge.iterdir():
            if entry.name.count(".") == 3:
                try:
                    owner = json.loads(entry.read_text())
                except (OSError, ValueError):
                    continue
                if owner.get("store") == str(root):
                    found.append(f"address {entry.name} booked on {bridge.name}")
    p = subprocess.run(["nft", "-j", "list", "table", "ip", names.nft_table], capture_output=True, text=True)
    if p.returncode == 0:
        for item in json.loads(p.stdout).get("nftables", []):
            if "map" in item and item["map"].get("elem"):
                found.append(f"published ports left in nft map {item['map']['name']}")
    return found


def nft_tables() -> set[str]:
    p = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    return set(p.stdout.splitlines()) if p.returncode == 0 else set()


def forwarding() -> dict[str, str]:
    """Every interface's net.ipv4.conf.<name>.forwarding."""
    conf = Path("/proc/sys/net/ipv4/conf")
    return {d.name: (d / "forwarding").read_text().strip() for d in conf.iterdir() if d.name not in ("all", "default")}


@dataclass
class NetworkState:
    """What podman's --network bridge may change on the host, as it is (read before the run)."""

    tables: set[str]
    ip_forward: str
    forwarding: dict[str, str]
    links: set[str]
    dirs: set[str]


def network_state() -> NetworkState:
    return NetworkState(
        nft_tables(),
        Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        forwarding(),
        set(os.listdir("/sys/class/net")),
        {d for d in PEER_DIRS if os.path.lexists(d)},
    )


def undo_podman_network(before: NetworkState) -> list[str]:
    """Remove the iptables-nft tables podman's network backend made in this run (if they hold
    nothing but its chains), its bridge and dirs if this run made them (the bridge only without
    ports, /run/netns only empty), restore net.ipv4.ip_forward and give every interface its
    forwarding back."""
    notes = []
    for table in sorted(nft_tables() - before.tables):
        family_name = table.split()[1:]  # "table ip nat" -> ["ip", "nat"]
        if len(family_name) != 2 or family_name[1].startswith("minirun"):
            continue
        listing = subprocess.run(["nft", "list", "table", *family_name], capture_output=True, text=True).stdout
        chains = [line.split()[1] for line in listing.splitlines() if line.strip().startswith("chain ")]
        if all(c.startswith(("NETAVARK", "CNI")) or c.isupper() for c in chains):
            subprocess.run(["nft", "delete", "table", *family_name], capture_output=True)
            notes.append(f"removed podman's {' '.join(family_name)} table")
    for link in PEER_LINKS:
        ports = Path("/sys/class/net", link, "brif")
        if link not in before.links and ports.is_dir() and not any(ports.iterdir()):
            subprocess.run(["ip", "link", "del", link], capture_output=True)
            notes.append(f"removed podman's bridge {link}")
    for directory in PEER_DIRS:
        if directory in before.dirs or not os.path.isdir(directory):
            continue
        if directory == "/run/netns":
            # podman bind-mounts it on itself (shared) to mount namespaces in it: unmount and remove
            # it only once empty (a namespace there is someone's); podman's cleanup of its --rm
            # container may still be unmounting its own for a moment
            for _ in range(50):
                if not os.listdir(directory):
                    break
                time.sleep(0.1)
            else:
                continue
            for _ in range(5):  # the bind mount, maybe more than once
                if directory not in {point for _, point, _ in mounts()} or os.listdir(directory):
                    break
                if subprocess.run(["umount", directory], capture_output=True).returncode != 0:
                    break
            try:
                os.rmdir(directory)
            except OSError:
                continue
        else:
            shutil.rmtree(directory, ignore_errors=True)
        notes.append(f"removed {directory}")
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    if forward.read_text().strip() != before.ip_forward:
        forward.write_text(before.ip_forward)  # sets every interface's forwarding to the same
        notes.append(f"net.ipv4.ip_forward back to {before.ip_forward}")
        for name, value in forwarding().items():
            was = before.forwarding.get(name)
            if was is None and Path("/sys/class/net", name, "bridge").is_dir():
                was = "1"  # a bridge made during the run (a minirun session's: minirun turns it on)
            if was is not None and was != value:
                Path("/proc/sys/net/ipv4/conf", name, "forwarding").write_text(was)
    return notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs of each command (default 20)")
    add_mount_flag(ap)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_network: must run as root (containers, bridges)", file=sys.stderr)
        return 2
    stop = defer_signals()
    side_before = side_paths_present()
    network_before = network_state()
    podman = shutil.which("podman")
    print(f"bench_network: container start by network mode, median wall time of {args.runs} runs each, interleaved")
    print(
        f"  machine     : {platform.node()}, Linux {platform.release()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()} ({sys.executable})"
    )
    print("  podman      : " + (version([podman, "--version"]) if podman else "not installed"))
    sys.stdout.flush()
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "minirun"), str(REPO / "images")],
        stdout=subprocess.DEVNULL,
    )

    tmp = Path(tempfile.mkdtemp(prefix="minirun-bench-network-"))
    store = tmp / "store"
    names: HostNames | None = None
    tools: list[Tool] = []
    failed = False
    leftovers: list[str] = []
    notes: list[str] = []
    hybrid_fix: list = []
    cgroups_before = None
    try:
        if podman:
            hybrid_fix, runtime = podman_peer(args.mount_v2_controllers)
        cgroups_before = cgroup_dirs()
        names = private_names(tmp)  # before the first minirun
        tar, _ = prepare_rootfs(tmp)
        port = free_port()
        tools += [
            Minirun(store, "minirun --network none", ("--network", "none")),
            Minirun(store, "minirun --network bridge", ("--network", "bridge")),
            Minirun(store, f"minirun bridge -p 127.0.0.1:{port}:80", ("-p", f"127.0.0.1:{port}:80")),
        ]
        if podman:
            none = Podman(podman, tmp, tar, runtime)
            tools += [none, PodmanBridge(none)]
        failed = bool(prepare_tools(tools, stop))
        failed = time_round_robin(tools, args.runs, stop) or failed
    except KeyboardInterrupt:
        print("interrupted; cleaning up; the figures below are partial", file=sys.stderr)
        failed = True
    finally:
        cleanup_tools(tools)
        for t in tools:
            leftovers += getattr(t, "leftovers", lambda: [])() if isinstance(t, Podman) else []
        if names:
            leftovers += minirun_leftovers(store, names)
            leftovers += names.cleanup()  # this run's bridge, nft table, run dir, cgroup parents
        leftovers += remove_temp_dir(tmp)
        notes += undo_podman_network(network_before)
        remove_side_paths(side_before)
        if cgroups_before is not None:
            new = cgroup_dirs() - cgroups_before
            leftovers += [f"cgroup {d} (new)" for d in sorted(new) if f"minirun-bench-{os.getpid()}" in d]
        unfix_hybrid_cgroups(hybrid_fix)

    medians = {t.label: statistics.median(t.times) if t.times else None for t in tools}
    base = medians.get("minirun --network none")
    w = max(len(t.label) for t in tools) + 2 if tools else 10
    print()
    print(f"  {'what':<{w}}{'median s':>9}{'min':>8}{'max':>8}{'vs none':>10}{'ok':>7}")
    for t in tools:
        if t.skipped:
            print(f"  {t.label:<{w}}  NOT TIMED: {t.skipped}")
            continue
        med = medians[t.label]
        comparable = med is not None and base is not None and t.label.startswith("minirun")
        delta = f"{(med - base) * 1000:+8.1f}ms" if comparable else "         –"
        print(
            f"  {t.label:<{w}}{med if med is not None else float('nan'):9.3f}{min(t.times or [0]):8.3f}"
            f"{max(t.times or [0]):8.3f}{delta:>10}{len(t.times):>4}/{args.runs}"
        )
        for f in t.failures[:3]:
            print(f"    FAILED: {f}")
    bridge = medians.get("minirun --network bridge")
    if base is not None and bridge is not None:
        added = bridge - base
        verdict = "within" if added <= TARGET_ADDED_S else "OVER"
        print(
            f"\n  --network bridge adds {added * 1000:.1f} ms to a start: {verdict} the "
            f"{TARGET_ADDED_S * 1000:.0f} ms target"
        )
    pn, pb = medians.get("podman run --rm --network none"), medians.get("podman run --rm --network bridge")
    if pn is not None and pb is not None:
        print(f"  podman: --network bridge adds {(pb - pn) * 1000:.1f} ms")
    for note in notes:
        print(f"  undone      : {note}")
    print(
        "  leftovers   : "
        + (
            "none (no containers, addresses, published ports, mounts or temp dirs remain)"
            if not leftovers
            else "; ".join(leftovers)
        )
    )
    return 1 if failed or leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
