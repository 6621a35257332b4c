"""Trees a container nests deeper than the host's verbs could once walk: past Python's recursion
limit (a RecursionError in diff, commit, export and cp) and past PATH_MAX (4,096 bytes, where
whole-path calls fail with ENAMETOOLONG and tree_size skipped what lay below). Each verb works
and what it makes holds the file at the bottom: out of a container and into one, and over an image
whose own layers hold such a tree."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from minirun.store.fsutil import remove_tree
from tests.forkserver import run_minirun

MAKE = "mk() { p=$1; i=0; while [ $i -lt $2 ]; do p=$p/d; i=$((i+1)); done; mkdir -p $p && echo $p; }; "
SHAPES = {
    # 1,500 levels (3,000 bytes): past the recursion limit, within PATH_MAX
    "deep": ("d", MAKE + "b=$(mk /d 1499) && echo bottom > $b/f", "d/" * 1500 + "f"),
    # 2,202 levels (4,400 bytes): past both; a path that long can be made only by moving a
    # tree below another, as no call takes it whole
    "long": (
        "y",
        MAKE + "b=$(mk /x 1100) && echo bottom > $b/f && t=$(mk /y 1100) && mv /x $t/x",
        "y/" + "d/" * 1100 + "x/" + "d/" * 1100 + "f",
    ),
}


@pytest.fixture(params=sorted(SHAPES))
def shape(request):
    return SHAPES[request.param]


@pytest.fixture
def deep(cli, busybox, tmp_path, shape):
    """A stopped container named `deep` holding the shape's tree; (its top dir, the bottom file).
    pytest's own cleanup (shutil.rmtree, recursive) fails on trees this deep, GNU rm takes
    seconds: minirun's remove_tree does it."""
    top, script, bottom = shape
    made = cli("run", "--name", "deep", "--network", "none", "busybox", "sh", "-c", script)
    assert made.code == 0, made.err
    yield top, bottom
    for name in os.listdir(tmp_path):  # the store is there too
        remove_tree(str(tmp_path / name))


def reach(bottom: str, command: str = "cat {}") -> str:
    """A shell line that runs `command` with the bottom file's path for {}, a path within
    PATH_MAX: the long shape's is reached in two halves."""
    head, _, tail = bottom.rpartition("/x/") if "/x/" in bottom else ("", "", bottom)
    return f"cd /{head} && " + command.format(f"x/{tail}") if head else command.format(f"/{tail}")


def make_below(top: str, rel: str, data: bytes = b"bottom\n", beside: str = "") -> None:
    """The file `rel` below `top` holding `data` (and one named `beside` next to it), its dirs
    made one name at a time."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    parts = rel.split("/")
    for name in parts[:-1]:
        os.mkdir(name, dir_fd=fd)
        below = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        os.close(fd)
        fd = below
    try:
        for name in filter(None, (parts[-1], beside)):
            with open(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd), "wb") as f:
                f.write(data)
    finally:
        os.close(fd)


def tar_of(rel: str, data: bytes = b"bottom\n") -> bytes:
    """A tar of the dirs of `rel`, parents first, and the file at its end (tarfile.add recurses)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            info = tarfile.TarInfo("/".join(parts[:i]))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        info = tarfile.TarInfo(rel)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def read_below(top: str, rel: str) -> bytes:
    """A file below `top` by a path longer than PATH_MAX: one name at a time."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    parts = rel.split("/")
    for name in parts[:-1]:
        below = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        os.close(fd)
        fd = below
    try:
        with open(os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd), "rb") as f:
            return f.read()
    finally:
        os.close(fd)


def member_bytes(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


def test_diff(cli, deep):
    _, bottom = deep
    diff = cli("diff", "deep")
    assert diff.code == 0, diff.err
    assert f"A /{bottom}" in diff.out.splitlines()


def test_commit_and_run(cli, deep):
    top, bottom = deep
    committed = cli("commit", "deep", "deep:1")
    assert committed.code == 0, committed.err
    # in the new container, the bottom is reached in two halves, each within PATH_MAX
    run = cli("run", "--rm", "--network", "none", "deep:1", "sh", "-c", reach(bottom))
    assert (run.code, run.out) == (0, "bottom\n"), run.err


def test_copy_up_into_a_new_volume(cli, deep):
    # docker's copy-up of an image's content into a new volume walked it by recursion: an image
    # nesting dirs past the limit could not be run with a volume there
    top, bottom = deep
    assert cli("commit", "deep", "deep:1").code == 0
    linked = cli("run", "--name", "linked", "--network", "none", "deep:1", "sh", "-c", reach(bottom, "ln {0} {0}h"))
    assert linked.code == 0, linked.err
    committed = cli("commit", "-c", f"VOLUME /{top}", "linked", "deep:2")
    assert committed.code == 0, committed.err
    run = cli("run", "--rm", "--network", "none", "deep:2", "sh", "-c", reach(bottom, "cat {0}h && stat -c %h {0}"))
    assert (run.code, run.out) == (0, "bottom\n2\n"), run.err


def test_export(cli, deep, tmp_path):
    _, bottom = deep
    out = tmp_path / "export.tar"
    exported = cli("export", "deep", "-o", str(out))
    assert exported.code == 0, exported.err
    assert member_bytes(out.read_bytes(), bottom) == b"bottom\n"


def test_cp_out_of_the_container(cli, deep, tmp_path):
    top, bottom = deep
    copied = cli("cp", f"deep:/{top}", str(tmp_path / "out"))
    assert copied.code == 0, copied.err
    assert read_below(str(tmp_path / "out"), bottom.partition("/")[2]) == b"bottom\n"


def test_cp_to_a_stream(deep, isolated_store):
    top, bottom = deep
    code, out, err = run_minirun(["cp", f"deep:/{top}", "-"], dict(os.environ, MINIRUN_ROOT=str(isolated_store)))
    assert code == 0, err
    assert member_bytes(out, bottom) == b"bottom\n"


def test_size_counts_the_bottom(cli, deep):
    listed = cli("ps", "-a", "-s", "--format", "{{.Size}}")
    assert listed.code == 0, listed.err
    assert listed.out.split()[0] == "7B", listed.out  # "bottom\n"


def test_export_then_import_and_run(cli, deep, tmp_path):
    _, bottom = deep
    out = tmp_path / "export.tar"
    assert cli("export", "deep", "-o", str(out)).code == 0
    imported = cli("import", str(out), "flat:1")
    assert imported.code == 0, imported.err
    run = cli("run", "--rm", "--network", "none", "flat:1", "/bin/sh", "-c", reach(bottom))
    assert (run.code, run.out) == (0, "bottom\n"), run.err


@pytest.fixture
def into(cli, busybox, tmp_path, shape):
    """A created container `into` whose command prints the shape's bottom file; (top, bottom, a
    host dir holding the shape's tree, made one name at a time)."""
    top, _, bottom = shape
    made = cli("create", "--name", "into", "--network", "none", "busybox", "sh", "-c", reach(bottom))
    assert made.code == 0, made.err
    host = tmp_path / "host"
    host.mkdir()
    make_below(str(host), bottom)
    yield top, bottom, host
    for name in os.listdir(tmp_path):  # the store is there too
        remove_tree(str(tmp_path / name))


def test_cp_into_the_container(cli, into):
    top, bottom, host = into
    copied = cli("cp", str(host / top), "into:/")
    assert copied.code == 0, copied.err
    started = cli("start", "-a", "into")
    assert (started.code, started.out) == (0, "bottom\n"), started.err


def test_cp_a_stream_into_the_container(cli, into):
    _, bottom, _ = into
    copied = cli("cp", "-", "into:/", input=tar_of(bottom))
    assert copied.code == 0, copied.err
    started = cli("start", "-a", "into")
    assert (started.code, started.out) == (0, "bottom\n"), started.err


def test_diff_of_changes_inside_a_deep_image_layer(cli, deep):
    """The image's own layer holds the tree: the lowers are looked up past PATH_MAX too."""
    top, bottom = deep
    assert cli("commit", "deep", "deep:1").code == 0
    where = bottom.rpartition("/")[0]
    change = reach(bottom, "echo changed > {}") + " && " + reach(f"{where}/g", "echo new > {}")
    ran = cli("run", "--name", "changed", "--network", "none", "deep:1", "sh", "-c", change)
    assert ran.code == 0, ran.err
    diff = cli("diff", "changed")
    assert diff.code == 0, diff.err
    dirs = where.split("/")
    expected = {f"C /{'/'.join(dirs[:i])}" for i in range(1, len(dirs) + 1)} | {f"C /{bottom}", f"A /{where}/g"}
    assert set(diff.out.splitlines()) == expected


@pytest.fixture
def cleaned(tmp_path):
    """tmp_path, its deep trees (the store's, a build context's) removed at the end."""
    yield tmp_path
    for name in os.listdir(tmp_path):
        remove_tree(str(tmp_path / name))


def test_build_copies_a_deep_tree_from_a_stage(cli, busybox, cleaned, shape):
    top, script, bottom = shape
    ctx = cleaned / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(
        f"FROM busybox AS deep\nRUN {script}\nRUN {reach(bottom, 'ln {0} {0}h')}\n"
        f"FROM busybox\nCOPY --from=deep /{top} /{top}\n"
    )
    built = cli("build", "-q", "-t", "copied:1", str(ctx))
    assert built.code == 0, built.err
    # the hardlink at the bottom is one still: made past PATH_MAX in the long shape
    run = cli("run", "--rm", "--network", "none", "copied:1", "sh", "-c", reach(bottom, "cat {0}h && stat -c %h {0}"))
    assert (run.code, run.out) == (0, "bottom\n2\n"), run.err


def test_build_copies_a_deep_context_dir(cli, busybox, cleaned, shape):
    top, _, bottom = shape
    ctx = cleaned / "ctx"
    ctx.mkdir()
    make_below(str(ctx), bottom, beside="left-out")
    (ctx / "Containerfile").write_text(f"FROM busybox\nCOPY {top} /{top}\n")
    # the tree is excluded but for what holds its bottom file: each dir is searched once
    (ctx / ".dockerignore").write_text(f"*.log\n{top}\n!{top}/**/f\n")
    built = cli("build", "--progress=plain", "-t", "copied:1", str(ctx))
    assert built.code == 0, built.err
    again = cli("build", "--progress=plain", "-t", "copied:1", str(ctx))  # the tree's digest again: cached
    assert again.code == 0, again.err
    assert again.out.count(" ---> Using cache") == 1, again.out
    assert again.out.splitlines()[-2:] == built.out.splitlines()[-2:]  # the same image
    run = cli("run", "--rm", "--network", "none", "copied:1", "sh", "-c", reach(bottom))
    assert (run.code, run.out) == (0, "bottom\n"), run.err
    beside = cli("run", "--rm", "--network", "none", "copied:1", "sh", "-c", reach(bottom.rpartition("/")[0], "ls {}"))
    assert (beside.code, beside.out) == (0, "f\n"), beside.err
