"""A build's step images: hidden from `images` unless -a, shown by `history`, removed with the
image they led to (docker's parent images)."""

from __future__ import annotations

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_step_images_are_hidden_shown_and_removed(cli, busybox):
    built = cli("build", "-q", "-t", "myapp:1.0", os.path.join(REPO, "images/myapp"))
    assert built.code == 0, built
    visible = [line.split()[:2] for line in cli("images").out.splitlines()[1:]]
    assert visible == [["myapp", "1.0"], ["busybox", "latest"]] or sorted(visible) == [
        ["busybox", "latest"],
        ["myapp", "1.0"],
    ]
    every = cli("images", "-a").out.splitlines()[1:]
    assert len(every) > 2 and all(
        row.split()[0] == "<none>" for row in every if row.split()[0] not in ("myapp", "busybox")
    )
    history_ids = [row.split()[0] for row in cli("history", "myapp:1.0").out.splitlines()[1:]]
    assert "<missing>" not in history_ids
    removed = cli("rmi", "myapp:1.0")
    assert removed.code == 0 and removed.out.count("Deleted: sha256:") >= len(every) - 1
    assert [line.split()[:2] for line in cli("images", "-a").out.splitlines()[1:]] == [["busybox", "latest"]]
    assert cli("run", "--rm", "busybox", "true").code == 0
