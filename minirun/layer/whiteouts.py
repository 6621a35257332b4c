"""Whiteouts in OCI's notation and in overlay's: the one place that knows how each side writes a deletion.

A layer tar (OCI) deletes NAME with an empty member `.wh.NAME` and makes a directory opaque with a
`.wh..wh..opq` member inside it; other `.wh..wh.*` names are aufs bookkeeping. A layer dir (overlay)
deletes NAME with a 0/0 character device and makes a directory opaque with the xattr
`trusted.overlay.opaque=y`. Overlay's own xattrs never travel between layers (see
`is_overlay_xattr`).

Kept lean (os, stat, errors): `diff` imports it on its hot path.
"""

from __future__ import annotations

import os
import stat

from minirun.errors import BadArchive

# OCI's notation, in a layer tar
WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
# overlay's notation, in a layer dir
OPAQUE_XATTR = "trusted.overlay.opaque"
# Overlay reads these from lower dirs; a crafted one (redirect, metacopy, origin) could make the
# kernel serve a file from outside the layer, so they never come in from a tar, go out into one,
# or get copied from one file to another.
FORBIDDEN_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")


def is_overlay_xattr(name: str) -> bool:
    """True for an xattr of overlay's own, which must never travel (FORBIDDEN_XATTR_PREFIXES)."""
    return name.startswith(FORBIDDEN_XATTR_PREFIXES)


# -- OCI -> overlay -------------------------------------------------------------------------


class Whiteout:
    """What an OCI whiteout member means for overlay: hide `target`, or make `target` opaque.
    A plain slotted class: a dataclass would cost `diff` an import of dataclasses."""

    __slots__ = ("opaque", "target")

    def __init__(self, target: str, opaque: bool) -> None:
        self.target = target
        self.opaque = opaque


def parse_whiteout(path: str) -> Whiteout | None:
    """Map an OCI whiteout path to overlay's meaning; None for an ordinary path.

    `.wh..wh..opq` -> its directory is opaque; `.wh.NAME` -> NAME is hidden. Other `.wh..wh.*`
    names are aufs bookkeeping and ignored (docker does the same): returned as opaque=False with
    an empty target.
    """
    parent, _, base = path.rpartition("/")
    if not base.startswith(WHITEOUT_PREFIX):
        return None
    if base == WHITEOUT_OPAQUE:
        return Whiteout(target=parent, opaque=True)
    if base.startswith(WHITEOUT_META_PREFIX):
        return Whiteout(target="", opaque=False)
    hidden = base[len(WHITEOUT_PREFIX) :]
    if hidden in ("", ".", ".."):
        raise BadArchive(f"refusing malformed whiteout in layer: {path!r}")
    return Whiteout(target=f"{parent}/{hidden}" if parent else hidden, opaque=False)


def make_whiteout(path: str) -> None:
    """Overlay's deletion of `path`: a 0/0 character device."""
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def make_opaque(path: str) -> None:
    """Overlay's opaque dir: the layers below show nothing through `path`."""
    os.setxattr(path, OPAQUE_XATTR, b"y", follow_symlinks=False)


# -- overlay -> OCI -------------------------------------------------------------------------


def is_whiteout(st: os.stat_result) -> bool:
    """Whether an lstat result is overlay's deletion (a 0/0 character device)."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(target: str | int) -> bool:
    """Whether a dir (a path, its last component never followed, or an open fd) is opaque."""
    try:
        if isinstance(target, int):
            return os.getxattr(target, OPAQUE_XATTR) == b"y"  # an fd takes no follow_symlinks
        return os.getxattr(target, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def oci_whiteout(parent: str, name: str) -> str:
    """The OCI member that deletes `name` in dir `parent` ("" for the layer's root)."""
    return f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else WHITEOUT_PREFIX + name


def oci_opaque(directory: str) -> str:
    """The OCI member that makes `directory` opaque."""
    return f"{directory}/{WHITEOUT_OPAQUE}"
