"""The shared init layer: stubs for the mount points and files minirun provides, stacked between
the image and the container's upper dir, so they never show up as the container's changes
(docker keeps the same stubs in a per-container init layer; ours is one for all containers)."""

from __future__ import annotations

import os

from minirun.store import Store
from minirun.store.fsutil import remove_tree

VERSION = "v1"
_DIRS = {"dev": 0o755, "proc": 0o555, "sys": 0o555, "etc": 0o755}
_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")
_SYMLINKS = {"etc/mtab": "/proc/mounts"}


def init_layer_dir(store: Store) -> str:
    """The init layer's diff dir (absolute), created on first use."""
    return os.path.realpath(os.path.join(store.root, init_layer_link(store)))


def init_layer_link(store: Store) -> str:
    """`l/init-<version>` (relative to the store root), created on first use."""
    link = os.path.join("l", f"init-{VERSION}")
    if not os.path.exists(os.path.join(store.root, link)):
        with store.locked():
            if not os.path.exists(os.path.join(store.root, link)):
                _create(store, link)
    return link


def _create(store: Store, link: str) -> None:
    final = os.path.join(store.root, "init", VERSION)
    tmp = final + ".tmp"
    remove_tree(tmp)
    diff = os.path.join(tmp, "diff")
    os.makedirs(diff, mode=0o755)
    for name, mode in _DIRS.items():
        os.mkdir(os.path.join(diff, name))
        os.chmod(os.path.join(diff, name), mode)
    for name in _FILES:
        fd = os.open(os.path.join(diff, name), os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644)
        os.close(fd)
    for name, target in _SYMLINKS.items():
        os.symlink(target, os.path.join(diff, name))
    remove_tree(final)
    os.rename(tmp, final)
    target = os.path.join(store.root, link)
    if os.path.lexists(target):
        os.unlink(target)
    os.symlink(os.path.relpath(os.path.join(final, "diff"), os.path.dirname(target)), target)
