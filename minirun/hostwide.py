"""The names minirun uses on the host, shared by every store on it: its state dir under /run
(address bookings, port publishers, bridge records), the default bridge and the prefix of user
networks' bridges, its nftables table, and the parent of containers' cgroups in every hierarchy.

A sandbox (a test session) gives its own through the environment, so two of them share a host
without meeting: MINIRUN_RUN_DIR, MINIRUN_BRIDGE_PREFIX (at most 7 letters and digits: a user
network's bridge is PREFIX-<7 hex>, or PREFIX.<7 hex> if internal, the host's end of a container's
veth pair PREFIX_<7 hex>, and Linux names stop at 15),
MINIRUN_NFT_TABLE, MINIRUN_CGROUP_PARENT (`system check` takes every cgroup under it for its store's business).
"""

from __future__ import annotations

import os

from minirun.errors import UsageError


def _name(variable: str, default: str, longest: int) -> str:
    value = os.environ.get(variable) or default
    if not (value.isascii() and value.isalnum() and len(value) <= longest):
        raise UsageError(f"{variable}={value!r}: at most {longest} ASCII letters and digits")
    return value


RUN_DIR = os.environ.get("MINIRUN_RUN_DIR") or "/run/minirun"
_PREFIX_LONGEST = 7  # PREFIX.<7 hex> and PREFIX_<7 hex> fill Linux's 15 letters
BRIDGE_PREFIX = _name("MINIRUN_BRIDGE_PREFIX", "minirun", _PREFIX_LONGEST)
DEFAULT_BRIDGE = f"{BRIDGE_PREFIX}0"  # the `bridge` network's, as docker0 is docker's
INTERNAL_BRIDGE_PREFIX = f"{BRIDGE_PREFIX}."  # an --internal network's bridge: the walls know it by name
VETH_PREFIX = f"{BRIDGE_PREFIX}_"  # the host's end of a container's veth pair (a bridge port): so do they
NFT_TABLE = _name("MINIRUN_NFT_TABLE", "minirun", 32)
CGROUP_PARENT = _name("MINIRUN_CGROUP_PARENT", "minirun", 64)  # <hierarchy>/PARENT/<container id>


def is_internal_bridge(name: str) -> bool:
    """Whether `name` is an --internal network's bridge of any minirun on this host, whatever its
    prefix: PREFIX.<7 hex> (networks.bridge_name). Another minirun's walls drop what its internal
    networks send to a port of ours that nftables DNATs; the port proxy turns their clients
    away itself, and so must know their bridges too."""
    prefix, dot, network = name.partition(".")
    return (
        bool(dot)
        and 0 < len(prefix) <= _PREFIX_LONGEST
        and prefix.isascii()
        and prefix.isalnum()
        and len(network) == 7
        and all(c in "0123456789abcdef" for c in network)
    )
