"""fsutil.remove_tree: a tree (a container's upper dir among them) goes, links in it are removed,
never followed, and dirs whose mode forbids writing go too."""

from __future__ import annotations

import os

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
