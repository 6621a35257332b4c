"""What `build` prints as it goes (cli/buildview.py), and the build's SHA-256 (build/sha256.py):
pure pieces, no root."""

from __future__ import annotations

import hashlib
import io

import pytest

from minirun.build import sha256
from minirun.cli.buildview import BuildView, view_for, wants_colour
from minirun.errors import UsageError


def steps(view: BuildView) -> None:
    view.step(2, 3, "RUN echo hi")
    view.running_in("0123456789abcdef")
    view.removing("0123456789abcdef")
    view.image("sha256:" + "ab" * 32)
    view.step(3, 3, "CMD true")
    view.using_cache()
    view.image("sha256:" + "cd" * 32)


def test_plain_lines_are_docker_classic_builders():
    out = io.StringIO()
    steps(BuildView(out, styled=False, capture=False))
    assert out.getvalue().splitlines() == [
        "Step 2/3 : RUN echo hi",
        " ---> Running in 0123456789ab",
        "Removing intermediate container 0123456789ab",
        " ---> " + "ab" * 6,
        "Step 3/3 : CMD true",
        " ---> Using cache",
        " ---> " + "cd" * 6,
    ]


def test_the_terminal_view_styles_the_same_lines_and_times_each_step():
    out = io.StringIO()
    steps(BuildView(out, styled=True, capture=False, colour=True))
    lines = out.getvalue().splitlines()
    assert lines[0] == "\x1b[1;34mStep 2/3 : \x1b[0mRUN echo hi"
    assert lines[5] == "\x1b[32m ---> Using cache\x1b[0m"
    image, _, took = lines[6].partition("\x1b[0m")
    assert image == "\x1b[33m ---> " + "cd" * 6
    assert took.startswith("\x1b[2m  ") and took.endswith("s\x1b[0m")
    without = io.StringIO()
    steps(BuildView(without, styled=True, capture=False, colour=False))
    assert "\x1b" not in without.getvalue() and without.getvalue().splitlines()[6].endswith("s")


def test_colour_unless_no_color_or_a_dumb_terminal():
    assert wants_colour({"TERM": "xterm-256color"})
    assert not wants_colour({"TERM": "xterm", "NO_COLOR": "1"})
    assert not wants_colour({"TERM": "dumb"})


def test_progress_modes():
    assert view_for("quiet", False).out is None and view_for("auto", True).capture
    assert view_for("plain", False).styled is False
    with pytest.raises(UsageError, match="invalid --progress 'fancy'"):
        view_for("fancy", False)


@pytest.mark.parametrize("size", [0, 100, (1 << 20) + 1])
def test_the_builds_sha256_is_sha256(size, monkeypatch):
    monkeypatch.setattr(sha256, "_announced", 0)
    data = bytes(range(256)) * (size // 256 + 1)
    hasher = sha256.new(b"head", size)
    hasher.update(data)
    assert hasher.hexdigest() == hashlib.sha256(b"head" + data).hexdigest()
