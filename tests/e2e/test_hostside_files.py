"""Files of an image or a container that the host's side of minirun reads, outside any
container's limits (build's COPY --chown lookups, ...): a hostile file there must neither hang
the host's side nor fill its memory, nor lead it to a host file."""

from __future__ import annotations

import glob
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile

import pytest

from tests.conftest import require_root


@pytest.fixture(autouse=True)
def _root():
    require_root()


@pytest.mark.parametrize(
    "make, why",
    [
        ("dd if=/dev/zero of=/etc/passwd bs=1 count=0 seek=100M", "/etc/passwd is over"),
        ("mkfifo /etc/passwd", "/etc/passwd is not a regular file"),
        ("mkfifo /etc/group", "/etc/group is not a regular file"),
    ],
)
def test_build_chown_refuses_a_hostile_user_database(cli, busybox, tmp_path, make, why):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("x")
    target = make.split()[-1] if make.startswith("mkfifo") else "/etc/passwd"
    (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN rm {target} && {make}\nCOPY --chown=nobody:nogroup f /f\n")
    built = cli("build", "-t", "hostile-passwd", str(ctx))
    assert built.code != 0 and why in built.err, built.err
    assert cli("images", "-q", "hostile-passwd").out == ""


def _tar(entries: dict[str, str | tuple[str]]) -> bytes:
    """A context tar: name -> text (a file) or (target,) (a symlink)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, value in entries.items():
            info = tarfile.TarInfo(name)
            if isinstance(value, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, value[0]
                tar.addfile(info)
            else:
                info.size = len(value.encode())
                tar.addfile(info, io.BytesIO(value.encode()))
    return out.getvalue()


def test_an_archive_contexts_links_never_lead_its_dockerfile_out_of_it(cli, busybox, tmp_path):
    # docker's daemon opens an archive context's Dockerfile and .dockerignore with their links
    # resolved inside the context (FollowSymlinkInScope): a host file is never read as either
    secret = tmp_path / "secret"
    secret.write_text("HOST-SECRET-LINE\n")
    built = cli("build", "-", input=_tar({"Dockerfile": (str(secret),)}))
    assert built.code != 0 and "HOST-SECRET" not in built.err, built.err
    built = cli("build", "-", input=_tar({"Dockerfile": ("../../../../../../.." + str(secret),)}))
    assert built.code != 0 and "HOST-SECRET" not in built.err, built.err
    # a host ignore file that would hide `f`: not the context's, so f is copied
    ignore = tmp_path / "ignore"
    ignore.write_text("f\n")
    context = {"Dockerfile": "FROM busybox\nCOPY f /f\n", "f": "mine\n", ".dockerignore": (str(ignore),)}
    built = cli("build", "-t", "scoped", "-", input=_tar(context))
    assert built.code == 0, built.err
    # links inside the context still lead where they point, from its root
    context = {"sub/real": "FROM busybox\nCOPY f /f\n", "Dockerfile": ("/sub/real",), "f": "x\n", "sub/ign": "f\n"}
    context[".dockerignore"] = ("sub/ign",)
    built = cli("build", "-", input=_tar(context))
    assert built.code != 0 and "COPY failed: file not found" in built.err, built.err


@pytest.mark.parametrize(
    "make, why",
    [
        ("dd if=/dev/zero of=/etc/passwd bs=1 count=0 seek=100M", "/etc/passwd is over"),
        ("mkfifo /etc/passwd", "/etc/passwd is not a regular file"),
    ],
)
def test_run_with_an_oci_runtime_refuses_a_hostile_user_database(cli, busybox, make, why):
    # with --runtime, the user is resolved on the host's side, before the runtime makes the
    # container: a FIFO there would hang the run where no container holds it
    assert (
        cli("run", "--name", "maker", "--network", "none", "busybox", "sh", "-c", f"rm /etc/passwd; {make}").code == 0
    )
    assert cli("commit", "maker", "hostile-passwd").code == 0
    ran = cli("run", "--rm", "--network", "none", "--runtime", "runc", "hostile-passwd", "echo", "ran")
    assert ran.code == 125 and why in ran.err, ran.err
    assert cli("ps", "-aq", "--filter", "ancestor=hostile-passwd").out == ""


def test_a_store_root_someone_else_left_open_is_closed_to_the_hosts_users(cli, busybox_template):
    """docker CVE-2021-41091: a store root made open (an admin's `mkdir -p`, 0755) let any user of
    the host walk into layers and containers' upper dirs and run the setuid-root file a
    container's root made there. The store closes its root (0700) before use."""
    base = tempfile.mkdtemp(dir="/var/tmp", prefix="minirun-test-")
    try:
        os.chmod(base, 0o755)
        root = os.path.join(base, "store")
        subprocess.run(["cp", "-a", "--", str(busybox_template), root], check=True)
        os.chmod(root, 0o755)
        made = cli(
            "run",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "cp /bin/busybox /planted && chmod 4755 /planted",
            root=root,
        )
        assert made.code == 0, made.err
        (planted,) = glob.glob(os.path.join(root, "**", "planted"), recursive=True)
        assert os.stat(planted).st_mode & stat.S_ISUID
        pid = os.fork()
        if pid == 0:  # a user of the host: nobody
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                os.stat(planted)
                os._exit(1)
            except PermissionError:
                os._exit(0)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "nobody reached the container's setuid-root file"
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    finally:
        cli("container", "prune", "-f", root=os.path.join(base, "store"))
        shutil.rmtree(base)


@pytest.mark.parametrize("word", ["sub/file", "sub/dir", "sub/a.tar"])
def test_a_context_link_swapped_in_by_a_container_never_leads_copy_out(cli, busybox, store, tmp_path, word):
    """A container sharing the build context (compose's `build: .` beside `volumes: [.:/app]`)
    swaps a dir of a COPY or ADD source for a relative link up and out, between the builder's
    resolving the source and its copy. The copy then runs chrooted into the image but opens its
    sources from an fd of the context, outside the chroot: `..` climbs to the host's root. The
    builder's two halves are called here, the swap between them, as the worst moment is."""
    from minirun.build import buildcopy
    from minirun.errors import MinirunError

    ctx, outside = tmp_path / "ctx", tmp_path / "outside"
    for top, text in ((ctx / "sub", "context\n"), (outside, "HOST-SECRET\n")):
        (top / "dir").mkdir(parents=True)
        (top / "file").write_text(text)
        (top / "dir" / "inner").write_text(text)
        with tarfile.open(top / "a.tar", "w") as tar:
            tar.add(top / "file", "unpacked")
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    racer = cli("run", "-d", "--network", "none", "-v", f"{ctx}:/ctx", "busybox", "sleep", "1000")
    assert racer.code == 0, racer.err
    instruction = "ADD" if word.endswith(".tar") else "COPY"
    staged: list = []
    try:
        sources = buildcopy.collect_sources(str(ctx), [word], instruction, instruction == "ADD")
        swapped = cli("exec", racer.out.strip(), "sh", "-c", "cd /ctx && mv sub old && ln -s ../outside sub")
        assert swapped.code == 0, swapped.err
        if instruction == "ADD":
            sources, staged = buildcopy.extract_archives(store, sources)
        buildcopy.copy_into_image(str(store.root), [], str(upper), str(work), sources, "/dst/", True, "", "COPY")
    except MinirunError:
        pass  # refused: what a source became is not what was resolved
    finally:
        for layer in staged:
            store.layers.discard(layer)
        assert cli("rm", "-f", racer.out.strip()).code == 0
    copied = [p.read_text() for p in upper.rglob("*") if p.is_file()]
    assert not any("HOST-SECRET" in text for text in copied), copied


# What a container sharing the build context (with CAP_MKNOD for a device) swaps in for a file the
# builder has stat'ed: a FIFO (an open to read blocks), a device node (the context is on the
# host's side, where no mount is nodev: the open calls its driver), a link to a host file.
_SWAPS = {
    "fifo": "mkfifo",
    "device": "mknod {} c 1 3 && true",
    "link": "ln -s /etc/hostname",
}


def _swap_command(kind: str, path: str) -> str:
    make = _SWAPS[kind]
    return f"rm {path} && " + (make.format(path) if "{}" in make else f"{make} {path}")


class _FifoWriter:
    """Lets an open of a FIFO that has no writer through, as a writer would: a builder blocked
    opening it would hang the test; let through, it reads this instead of a file, and the test
    fails on what it then does."""

    def __init__(self, path) -> None:
        import threading

        self.path, self.done = path, threading.Event()
        self.thread = threading.Thread(target=self._release, daemon=True)

    def _release(self) -> None:
        import errno

        while not self.done.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno not in (errno.ENXIO, errno.ENOENT):  # no reader yet, or no FIFO yet
                    raise
            else:
                os.write(fd, b"FIFO-DATA\n")
                os.close(fd)
            self.done.wait(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


@pytest.mark.parametrize("kind", sorted(_SWAPS))
def test_a_context_file_swapped_by_a_container_is_never_read_for_the_cache_digest(
    cli, busybox, tmp_path, monkeypatch, kind
):
    """The container swaps `sub/file` right after the builder's walk has stat'ed the entries of
    `sub` (the worst moment, played by a wrapped kept_entries): the digest refuses it, neither
    blocking on a FIFO nor opening a device or following a link out of the context."""
    from minirun.build import buildcopy
    from minirun.errors import MinirunError

    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "sub" / "file").write_text("context\n")
    racer = cli("run", "-d", "--network", "none", "--cap-add", "MKNOD", "-v", f"{ctx}:/ctx", "busybox", "sleep", "1000")
    assert racer.code == 0, racer.err
    listed = buildcopy.kept_entries

    def kept_entries(dir_fd, dir_rel, *args):
        entries = listed(dir_fd, dir_rel, *args)
        if dir_rel == "sub":
            swapped = cli("exec", racer.out.strip(), "sh", "-c", _swap_command(kind, "/ctx/sub/file"))
            assert swapped.code == 0, swapped.err
        return entries

    monkeypatch.setattr(buildcopy, "kept_entries", kept_entries)
    try:
        with _FifoWriter(ctx / "sub" / "file"), pytest.raises(MinirunError, match="changed while it was being read"):
            buildcopy.collect_sources(str(ctx), ["sub"], "COPY", False)
    finally:
        assert cli("rm", "-f", racer.out.strip()).code == 0


def _swap_in(kind: str, dir_fd: int, name: str) -> None:
    """The container's swap, done by name in the dir the copy holds open (it is chrooted into the
    image by then: no path of the host names the context)."""
    import stat

    os.unlink(name, dir_fd=dir_fd)
    if kind == "fifo":
        os.mkfifo(name, dir_fd=dir_fd)
    elif kind == "device":
        os.mknod(name, stat.S_IFCHR | 0o644, os.makedev(1, 3), dir_fd=dir_fd)
    else:
        os.symlink("/etc/hostname", name, dir_fd=dir_fd)


@pytest.mark.parametrize("word", ["sub/file", "sub"])
@pytest.mark.parametrize("kind", sorted(_SWAPS))
def test_a_context_file_swapped_by_a_container_is_never_read_by_copy(store, tmp_path, monkeypatch, word, kind):
    """The copy stats each source again, in its child; the swap comes right after that stat, just
    before the file is opened (a wrapped _Copier._regular plays the container there): the copy
    refuses it, neither blocking on a FIFO nor opening a device on the host's side."""
    from minirun.build import buildcopy
    from minirun.errors import MinirunError

    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "sub" / "file").write_text("context\n")
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    regular = buildcopy._Copier._regular

    def swapped_regular(self, dir_fd, name, *args):
        _swap_in(kind, dir_fd, name)
        return regular(self, dir_fd, name, *args)

    monkeypatch.setattr(buildcopy._Copier, "_regular", swapped_regular)  # the copy's child inherits it
    sources = buildcopy.collect_sources(str(ctx), [word], "COPY", False)
    with _FifoWriter(ctx / "sub" / "file"), pytest.raises(MinirunError) as refused:
        buildcopy.copy_into_image(str(store.root), [], str(upper), str(work), sources, "/dst/", True, "", "COPY")
    assert "file: changed while it was being copied" in refused.value.message
    assert not (upper / "dst" / "file").exists()


@pytest.mark.parametrize("kind", ["device", "fifo"])
@pytest.mark.parametrize("swapped", ["Dockerfile", ".dockerignore"])
def test_a_dockerfile_swapped_by_a_container_is_never_opened(store, tmp_path, monkeypatch, kind, swapped):
    """The Dockerfile and the ignore file are found by isfile, then read: a container sharing the
    context swaps one for a FIFO or a device node in between (a wrapped load_filter or
    find_ignore_file plays it, right after the isfile). The read refuses it, neither blocking on
    the FIFO nor opening the device on the host's side."""
    from minirun.build import builder, ignore
    from minirun.errors import MinirunError

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\n")
    (ctx / ".dockerignore").write_text("secret\n")
    target = ctx / swapped

    def swap() -> None:
        dir_fd = os.open(ctx, os.O_RDONLY | os.O_DIRECTORY)
        try:
            _swap_in(kind, dir_fd, swapped)
        finally:
            os.close(dir_fd)

    if swapped == "Dockerfile":  # load_filter runs between find_dockerfile's isfile and the read
        load_filter = builder.load_filter
        monkeypatch.setattr(builder, "load_filter", lambda *args: (swap(), load_filter(*args))[1])
    else:
        find = ignore.find_ignore_file
        monkeypatch.setattr(ignore, "find_ignore_file", lambda *args: (find(*args), swap())[0])
    with _FifoWriter(target), pytest.raises(MinirunError, match=f"{swapped} is not a regular file"):
        builder.build_image(store, builder.BuildOptions(context=str(ctx)))
