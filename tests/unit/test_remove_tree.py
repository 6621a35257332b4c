"""fsutil.remove_tree: a tree (a container's upper dir among them) goes, links in it are removed,
never followed, and dirs whose mode forbids writing go too."""

from __future__ import annotations

import os
import subprocess

from minirun.store.fsutil import remove_tree


def test_a_tree_goes_and_what_its_links_point_to_stays(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "file").write_text("x")
    (tree / "a" / "dir-link").symlink_to(outside)
    (tree / "file-link").symlink_to(outside / "keep")
    (tree / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tree / "fifo")
    (tree / "a").chmod(0o500)
    remove_tree(str(tree))
    assert not os.path.lexists(tree)
    assert (outside / "keep").read_text() == "x"


def test_a_file_a_link_and_nothing(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    remove_tree(str(link))  # the link goes, not what it names
    assert not os.path.lexists(link) and target.is_dir()
    file = tmp_path / "file"
    file.write_text("x")
    remove_tree(str(file))
    assert not file.exists()
    remove_tree(str(tmp_path / "missing"))


def make_deep(top, depth: int, width: int = 1) -> None:
    """`depth` nested dirs below `top` (each `width` wide at the bottom, a file in each), made one
    name at a time: deeper than PATH_MAX and Python's recursion limit, as a container may."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    for i in range(width):
        os.mkdir(f"w{i}", dir_fd=fd)
    os.close(fd)


def test_a_tree_deeper_than_any_limit_goes(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    try:
        make_deep(tree, 5000, width=3)
        (tree / "side").mkdir()
        make_deep(tree / "side", 300)
        remove_tree(str(tree))
        assert not os.path.lexists(tree)
        assert os.listdir(tmp_path) == []
    finally:  # pytest's own cleanup (shutil.rmtree, recursive) would fail on what a failure left
        subprocess.run(["rm", "-rf", "--", str(tree)], check=True)
