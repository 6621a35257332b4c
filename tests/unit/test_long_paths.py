"""Trees nested past PATH_MAX, as a container may make them one name at a time: tree_size counts
all of them, and ShortPaths gives a path any call takes for what lies at the bottom."""

from __future__ import annotations

import os

import pytest

from minirun.layer.longpaths import CHUNK, ShortPaths, cuts_of
from minirun.store.fsutil import remove_tree, tree_size
from tests.unit.test_remove_tree import make_deep


@pytest.fixture
def tree(tmp_path):
    top = tmp_path / "tree"
    top.mkdir()
    yield top
    remove_tree(str(top))  # shutil.rmtree recurses; GNU rm takes seconds on a tree this deep


def test_tree_size_counts_past_path_max(tree):
    make_deep(tree, 2100)  # an empty file `f` in every level
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(2100):
        below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = below
    with open(os.open("bottom", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "wb") as f:
        f.write(b"12345")
    os.close(fd)
    assert tree_size(str(tree)) == 5


def test_cuts_fall_on_names_and_agree_with_prefixes():
    rel = "/".join(f"n{i}" for i in range(5000))
    cuts = cuts_of(rel)
    starts = [0] + [c + 1 for c in cuts]
    ends = cuts + [len(rel)]
    assert all(rel[c] == "/" for c in cuts)
    assert all(0 < end - start <= CHUNK for start, end in zip(starts, ends))
    assert cuts_of(rel[: cuts[-1]]) == cuts[:-1]
    assert cuts_of("a/b") == []


def test_short_paths_reach_the_bottom(tree):
    make_deep(tree, 2100)
    paths = ShortPaths(str(tree))
    try:
        bottom = paths("d/" * 2100 + "new")
        assert len(bottom) < 4096
        os.mkdir(bottom)
        assert os.path.isdir(paths("d/" * 2100 + "new"))
        assert paths("d/d") == f"{tree}/d/d"  # short: as it is
    finally:
        paths.close()


def test_a_dir_chain_holds_few_fds_and_reopens_what_it_closed(tree):
    from minirun.layer.dirchain import DirChain

    make_deep(tree, 500)
    before = len(os.listdir("/proc/self/fd"))
    top = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    chain = DirChain(top)
    inodes = [os.fstat(top).st_ino]
    for _ in range(500):
        inodes.append(os.fstat(chain.enter("d")).st_ino)
    assert len(os.listdir("/proc/self/fd")) - before < 100
    while chain.depth:
        assert os.fstat(chain.fd()).st_ino == inodes[chain.depth]
        chain.leave()
    chain.close()
    os.close(top)
    assert len(os.listdir("/proc/self/fd")) == before


def test_diff_cuts_where_short_paths_do():
    from minirun.layer import changes, longpaths

    assert changes._SHORT == longpaths.SHORT


def test_diff_looks_up_a_lower_layer_past_the_limits(tmp_path):
    """A dir 2,100 deep in the image (past PATH_MAX and the recursion limit), asked for cold, and
    a container's change at its bottom."""
    from minirun.layer.changes import _Lowers, changes

    layer, upper = tmp_path / "layer", tmp_path / "upper"
    layer.mkdir()
    upper.mkdir()
    try:
        make_deep(layer, 2100)  # an empty file `f` in every level, a dir w0 at the bottom
        paths = ShortPaths(str(upper))
        for depth in range(1, 2100):
            os.mkdir(paths("/".join(["d"] * depth)))
        with open(paths("d/" * 2099 + "f"), "w") as f:  # changed in the container
            f.write("x")
        paths.close()
        assert list(_Lowers([str(layer)]).children("/".join(["d"] * 2100))) == ["w0"]
        found = [str(c) for c in changes(str(upper), [str(layer)])]
        assert found == ["C /" + "/".join(["d"] * i) for i in range(1, 2100)] + ["C /" + "d/" * 2099 + "f"]
    finally:
        remove_tree(str(layer))
        remove_tree(str(upper))
