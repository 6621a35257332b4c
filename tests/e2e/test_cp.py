"""`cp` as a user types it: both ways, `-` streams, docker's path rules and owners, running and
stopped containers with their volumes, and a container that tries to lead cp out of its root."""

from __future__ import annotations

import io
import os
import stat
import tarfile

from tests.helpers import f, make_tar, wait_until


def make_tree(root) -> None:
    (root / "tree" / "sub").mkdir(parents=True)
    (root / "tree" / "file").write_bytes(bytes(range(256)) * 40)
    os.chown(root / "tree" / "file", 1234, 5678)
    os.chmod(root / "tree" / "file", 0o4751)
    os.link(root / "tree" / "file", root / "tree" / "sub" / "hard")
    os.symlink("../file", root / "tree" / "sub" / "link")


def test_cp_both_ways_in_a_running_container(cli, busybox, tmp_path):
    make_tree(tmp_path)
    vol, ro = tmp_path / "vol", tmp_path / "ro"
    vol.mkdir()
    ro.mkdir()
    run = cli("run", "-d", "--name", "cc", "-v", f"{vol}:/vol", "-v", f"{ro}:/ro:ro", "busybox", "sleep", "1000")
    assert run.code == 0, run.err
    tree = str(tmp_path / "tree")
    assert cli("cp", tree, "cc:/tmp").code == 0  # into an existing directory: /tmp/tree
    assert cli("cp", "-a", tree + "/.", "cc:/tmp/kept").code == 0  # the contents, into a new directory
    inside = cli(
        "exec", "cc", "sh", "-c", "cd /tmp && stat -c '%n %u:%g %a %h' tree/file kept/file && readlink kept/sub/link"
    )
    assert inside.out.splitlines() == ["tree/file 0:0 4751 2", "kept/file 1234:5678 4751 2", "../file"]

    out = tmp_path / "out"
    out.mkdir()
    assert cli("cp", "cc:/tmp/kept", str(out / "mine")).code == 0  # without -a: the user's, no set-id
    assert cli("cp", "-a", "cc:/tmp/kept/file", str(out)).code == 0  # with -a: the source's owner
    assert (out / "mine" / "file").read_bytes() == (tmp_path / "tree" / "file").read_bytes()
    mine, kept = os.stat(out / "mine" / "file"), os.stat(out / "file")
    assert (mine.st_uid, mine.st_gid, stat.S_IMODE(mine.st_mode)) == (os.getuid(), os.getgid(), 0o751)
    assert (kept.st_uid, kept.st_gid, stat.S_IMODE(kept.st_mode)) == (1234, 5678, 0o4751)
    assert os.stat(out / "mine" / "sub" / "hard").st_ino == mine.st_ino
    assert os.readlink(out / "mine" / "sub" / "link") == "../file"

    # `-`: a tar to stdout (named as asked), a tar from stdin (into a volume: its host dir)
    listing = tarfile.open(fileobj=io.BytesIO(cli_bytes("cp", "cc:/tmp/kept/sub", "-"))).getnames()
    assert sorted(listing) == ["sub", "sub/hard", "sub/link"]
    assert cli("cp", "-", "cc:/vol", input=make_tar([f("streamed", "in")])).code == 0
    assert (vol / "streamed").read_text() == "in"

    # docker's refusals: one line each, exit 125
    for args, message in [
        (("cc:/nope", str(out)), "Could not find the file /nope in container cc"),
        (("cc:/tmp/kept", str(out / "file")), f"cannot copy a directory to a file: {out}/file"),
        (("cc:/tmp/kept/file", str(out / "no" / "x")), f"no such directory: {out}/no"),
        ((tree, "cc:/ro"), "mounted volume is marked read-only"),
        (("-", "cc:/tmp/kept/file"), 'destination "cc:/tmp/kept/file" must be a directory'),
        ((tree, str(out)), "must specify at least one container source"),
    ]:
        result = cli("cp", *args)
        assert (result.code, result.err) == (125, f"minirun: error: {message}\n"), args
    assert os.listdir(ro) == []


def cli_bytes(*args: str) -> bytes:
    """The raw stdout of a CLI call (the `cli` fixture decodes it)."""
    from tests.forkserver import run_minirun

    code, out, err = run_minirun(list(args), dict(os.environ))
    assert code == 0, err
    return out


def test_cp_with_stopped_containers_and_their_volumes(cli, busybox, tmp_path):
    vol, ro = tmp_path / "vol", tmp_path / "ro"
    vol.mkdir()
    ro.mkdir()
    (ro / "r").write_text("read-only volume")
    made = cli(
        "run", "--name", "st", "-v", f"{vol}:/vol", "-v", f"{ro}:/ro:ro", "busybox", "sh", "-c", "echo made > /made"
    )
    assert made.code == 0, made.err
    (tmp_path / "new").write_text("copied in")
    assert cli("cp", str(tmp_path / "new"), "st:/vol/from-host").code == 0  # through the volume: its host dir
    assert cli("cp", str(tmp_path / "new"), "st:/etc/").code == 0  # into the writable layer
    assert (vol / "from-host").read_text() == "copied in"
    out = tmp_path / "out"
    assert cli("cp", "st:/", str(out)).code == 0  # the whole root, volumes included, as a new directory
    assert (out / "made").read_text() == "made\n"
    assert (out / "etc" / "new").read_text() == "copied in"
    assert (out / "ro" / "r").read_text() == "read-only volume"
    assert (out / "vol" / "from-host").read_text() == "copied in"
    assert not (out / "proc").exists() or os.listdir(out / "proc") == []  # no /proc in a copy, as docker
    refused = cli("cp", str(tmp_path / "new"), "st:/ro")
    assert (refused.code, refused.err) == (125, "minirun: error: mounted volume is marked read-only\n")
    assert {"A /etc/new", "A /made"} <= set(cli("diff", "st").out.splitlines())  # in the container's upper

    assert cli("run", "--name", "rofs", "--read-only", "busybox", "true").code == 0
    refused = cli("cp", str(tmp_path / "new"), "rofs:/tmp")
    assert (refused.code, refused.err) == (125, "minirun: error: container rootfs is marked read-only\n")


def test_cp_stays_inside_a_hostile_containers_root(cli, busybox, store, tmp_path):
    """Links to the host's paths, `..` chains, and a directory swapped for a link to / in a loop
    (docker's CVE-2018-15664): cp reads and writes the container's files, never the host's."""
    from minirun.containers.container import Containers
    from minirun.containers.copy import copy_from_container, copy_to_container
    from minirun.errors import MinirunError

    secret = tmp_path / "secret" / "shadow"
    secret.parent.mkdir()
    secret.write_text("HOST SECRET")
    target = tmp_path / "target"  # a host directory a write must never reach
    target.mkdir()
    (tmp_path / "payload").write_text("payload")
    # the link stays a while (a loop of the shell's own, no fork), the directory comes straight back
    linger = "i=0; while [ $i -lt 300 ]; do i=$((i+1)); done"
    swap = f"mkdir -p /w/d; while :; do mv /w/d /w/d.real; ln -s / /w/d; {linger}; rm /w/d; mv /w/d.real /w/d; done"
    links = f"ln -s / /out; ln -s ../../../../../../.. /up; ln -s {secret} /link; touch /ready"
    assert cli("run", "-d", "--name", "hostile", "busybox", "sh", "-c", f"{links}; {swap}").code == 0
    containers = Containers(store)
    hostile = containers.find("hostile")
    got = tmp_path / "got"

    def copy_out(path: str, follow: bool = False) -> str:
        copy_from_container(containers, hostile, path, str(got), archive=False, follow=follow, stdout=None)
        return got.read_text()

    def copy_in(path: str) -> None:
        copy_to_container(containers, hostile, str(tmp_path / "payload"), path, archive=False, follow=False, stdin=None)

    assert wait_until(lambda: not _missing(copy_out, "/ready"))
    for path, follow in [(f"/out{secret}", False), (f"/up{secret}", False), ("/link", True)]:
        assert _missing(copy_out, path, follow), path
        assert _missing(copy_in, f"{path}/x"), path
    seen_the_link = 0
    for _ in range(20):
        try:
            seen_the_link += "root:x:0:0" in copy_out("/w/d/etc/passwd")  # only while /w/d -> /
        except MinirunError:
            pass
        assert _missing(copy_out, f"/w/d{secret}")
        assert _missing(copy_in, f"/w/d{target}/x")
    assert seen_the_link  # the race was run: some copies went through the link, all stayed inside
    assert os.listdir(target) == [] and secret.read_text() == "HOST SECRET"
    assert not got.exists() or "HOST SECRET" not in got.read_text()


def _missing(copy, *args) -> bool:
    """The container has no such path: the host's one, by the same name, was not reached."""
    from minirun.errors import MinirunError

    try:
        copy(*args)
    except MinirunError as exc:
        return "Could not find the file" in exc.message
    return False
