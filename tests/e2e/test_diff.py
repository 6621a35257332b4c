"""`diff` from the upper dir alone, checked against a slow full comparison of the two trees.

The reference mounts the image's layers (and, for the merged view, the container's upper) with
overlay in a private mount namespace and compares every path the way docker's naive differ
does: present in one tree only -> A or D (a deleted dir counts once), present in both -> C when
type, mode, owner, size, mtime, device or link target differ (a dir's mtime is ignored), and
every parent of a change is C.
"""

from __future__ import annotations

import os
import stat
import tempfile

from minirun.containers.container import Containers
from minirun.layer.changes import PROVIDED
from minirun.store.initlayer import init_layer_dir
from tests.helpers import d, f, in_mount_ns, make_image, make_tar


def _tree(root: str) -> dict[str, os.stat_result]:
    found = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            found["/" + os.path.relpath(path, root)] = (
                os.lstat(path),
                os.readlink(path) if os.path.islink(path) else None,
            )
    return found


def _differs(a, b) -> bool:
    (sa, la), (sb, lb) = a, b
    if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode):
        return True
    if (stat.S_IMODE(sa.st_mode), sa.st_uid, sa.st_gid) != (stat.S_IMODE(sb.st_mode), sb.st_uid, sb.st_gid):
        return True
    if stat.S_ISDIR(sa.st_mode):
        return False
    return (sa.st_size, sa.st_mtime_ns, sa.st_rdev, la) != (sb.st_size, sb.st_mtime_ns, sb.st_rdev, lb)


def reference_changes(lowers: list[str], upper: str) -> list[str]:
    def walk_both():
        from minirun import linux
        from minirun.runtime.overlay import mount_overlay

        with tempfile.TemporaryDirectory() as scratch:
            image, merged, work = (os.path.join(scratch, n) for n in ("image", "merged", "work"))
            for path in (image, merged, work):
                os.mkdir(path)
            linux.mount("overlay", image, "overlay", linux.MS_RDONLY, "lowerdir=" + ":".join(lowers))
            mount_overlay(merged, lowers, upper, work)
            try:
                return _tree(image), _tree(merged)
            finally:
                linux.umount2(merged, linux.MNT_DETACH)
                linux.umount2(image, linux.MNT_DETACH)

    before, after = in_mount_ns(walk_both)
    changes = {}
    for path in after.keys() - before.keys():
        changes[path] = "A"
    for path in before.keys() - after.keys():
        if os.path.dirname(path) in before.keys() - after.keys():
            continue  # inside a deleted dir: docker reports the dir once
        changes[path] = "D"
    for path in after.keys() & before.keys():
        if _differs(before[path], after[path]):
            changes[path] = "C"
    for path in list(changes):
        parent = os.path.dirname(path)
        while parent != "/":
            if parent in before and parent in after:
                changes.setdefault(parent, "C")
            parent = os.path.dirname(parent)
    return [f"{kind} {path}" for path, kind in sorted(changes.items()) if path not in PROVIDED]


def run_and_diff(cli, store, name: str, script: str, image: str = "busybox") -> list[str]:
    result = cli("run", "--name", name, image, "sh", "-c", script)
    assert result.code == 0, result
    diff = cli("diff", name)
    assert diff.code == 0, diff
    container = Containers(store).find(name)
    image_obj = store.images.get(container.config.image)
    lowers = [init_layer_dir(store)] + [store.layers.diff_dir(x) for x in reversed(image_obj.diff_ids)]
    assert diff.out.splitlines() == reference_changes(lowers, container.upper)
    return diff.out.splitlines()


def test_the_seed_walkthrough(cli, store, busybox):
    assert run_and_diff(cli, store, "seed", "echo data > /tmp/file.txt") == ["C /tmp", "A /tmp/file.txt"]


def test_a_dir_recreated_over_a_deleted_one_is_changed_not_deleted(cli, store, busybox):
    assert run_and_diff(cli, store, "opq", "rm -rf /root && mkdir /root && touch /root/x") == ["C /root", "A /root/x"]


def test_an_opaque_dir_reports_its_lost_children(cli, store, busybox):
    make_image(
        store,
        "withdir",
        [make_tar([d("srv"), f("srv/a", "a"), f("srv/b", "b"), d("srv/sub"), f("srv/sub/c", "c")])],
        base=busybox,
    )
    out = run_and_diff(
        cli, store, "opq2", "rm -rf /srv && mkdir /srv && echo new > /srv/a && echo n > /srv/n", "withdir"
    )
    assert out == ["C /srv", "C /srv/a", "D /srv/b", "A /srv/n", "D /srv/sub"]


def test_created_then_deleted_is_absent_and_deletes_are_reported(cli, store, busybox):
    out = run_and_diff(cli, store, "dels", "touch /tmp/gone; rm /tmp/gone; rm /etc/passwd; rm -rf /usr/sbin")
    assert out == ["C /etc", "D /etc/passwd", "C /usr", "D /usr/sbin"]


def test_types_modes_links_and_new_trees(cli, store, busybox):
    script = (
        "rm /bin/cat && mkdir /bin/cat && touch /bin/cat/x; chmod 700 /home; "
        "mkdir -p /new/deep && echo > /new/deep/f; ln -sf /bin/busybox /bin/ls; "
        "rm /bin/echo && ln -s busybox /bin/echo; touch /bin/busybox"
    )
    out = run_and_diff(cli, store, "kinds", script)
    assert "C /bin/cat" in out and "A /bin/cat/x" in out and "C /home" in out and "A /new/deep/f" in out
    assert "C /bin/busybox" in out and "C /bin/echo" in out


def test_provided_files_and_mount_points_never_show(cli, store, busybox):
    out = run_and_diff(cli, store, "quiet", "echo x > /dev/null; cat /etc/hosts /etc/hostname >/dev/null; true")
    assert out == []


def test_json_format_and_errors(cli, busybox):
    cli("run", "--name", "js", "busybox", "sh", "-c", "echo data > /tmp/file.txt")
    assert (
        cli("diff", "--format", "json", "js").out.strip()
        == '[{"Kind": 0, "Path": "/tmp"}, {"Kind": 1, "Path": "/tmp/file.txt"}]'
    )
    missing = cli("diff", "nosuch")
    assert missing.code == 125 and "No such container" in missing.err


def test_diff_of_a_running_container(cli, busybox):
    cid = cli("run", "-d", "--name", "live", "busybox", "sh", "-c", "echo x > /tmp/live; sleep 1000").out.strip()
    try:
        import time

        deadline = time.monotonic() + 10
        while cli("diff", "live").out != "C /tmp\nA /tmp/live\n" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cli("diff", "live").out == "C /tmp\nA /tmp/live\n"
    finally:
        cli("rm", "-f", cid)
