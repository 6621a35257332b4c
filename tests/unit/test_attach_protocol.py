"""attach's pure parts, without root: docker's --detach-keys syntax, the escape matcher that
holds a prefix of the keys back, the monitor's frames, and the options of create, run and attach."""

from __future__ import annotations

import pytest

from minirun.cli.attachcmd import parser as attach_parser
from minirun.cli.runargs import parse_run_args
from minirun.containers.attachclient import EscapeMatcher, parse_detach_keys
from minirun.containers.attachserver import MAX_FRAME, FrameReader, frame, pack_size, unpack_size
from minirun.errors import UsageError


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("", b"\x10\x11"),  # docker's default, ctrl-p ctrl-q
        ("ctrl-p,ctrl-q", b"\x10\x11"),
        ("ctrl-a,x", b"\x01x"),
        ("a", b"a"),
        ("X,ctrl-z", b"X\x1a"),
        ("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", b"\x00\x1b\x1c\x1d\x1e\x1f"),
        ("ctrl-\\\\", b"\x1c"),  # as docker's docs spell it
    ],
)
def test_detach_keys(text, keys):
    assert parse_detach_keys(text) == keys


@pytest.mark.parametrize("text", ["ctrl-", "ctrl-A", "ctrl-1", "ab", "ctrl-p,", "ctrl-p,,x", "é"])
def test_bad_detach_keys_name_the_key(text):
    with pytest.raises(UsageError, match=r"invalid detach keys \(.*\): unknown key"):
        parse_detach_keys(text)


def test_the_matcher_holds_a_prefix_back_and_gives_it_up_when_the_next_key_differs():
    matcher = EscapeMatcher(b"\x10\x11")
    assert matcher.feed(b"ls\r") == (b"ls\r", False)
    assert matcher.feed(b"\x10") == (b"", False)  # maybe the start of the keys: held
    assert matcher.feed(b"a") == (b"\x10a", False)  # it was not: typed as it was
    assert matcher.feed(b"\x10\x10") == (b"\x10", False)  # the second ^P may start the keys
    assert matcher.feed(b"\x11rest") == (b"", True)  # detached: nothing after the keys is sent
    one_read = EscapeMatcher(b"\x01x")
    assert one_read.feed(b"echo\x01x") == (b"echo", True)


def test_frames_round_trip_in_any_split():
    data = frame(b"0", b"typed") + frame(b"w", pack_size(40, 120)) + frame(b"c")
    for cut in range(len(data) + 1):
        reader = FrameReader()
        got = (reader.feed(data[:cut]) or []) + (reader.feed(data[cut:]) or [])
        assert got == [(b"0", b"typed"), (b"w", b"40 120"), (b"c", b"")]
    assert unpack_size(b"40 120") == (40, 120)
    assert unpack_size(b"0 80") is None and unpack_size(b"x") is None and unpack_size(b"70000 1") is None


def test_an_oversized_frame_ends_the_client():
    assert FrameReader().feed(b"0" + (MAX_FRAME + 1).to_bytes(4, "big")) is None


def test_create_has_runs_options_but_not_those_of_running_it():
    opts = parse_run_args(["-it", "--name", "job", "busybox", "sh"], verb="create")
    assert opts.interactive and opts.tty and not opts.detach and opts.name == "job"
    for running in (["-d"], ["--detach-keys", "a"], ["--sig-proxy=false"]):
        with pytest.raises(UsageError):
            parse_run_args([*running, "busybox"], verb="create")


def test_sig_proxy_is_a_docker_boolean():
    assert parse_run_args(["img"]).sig_proxy
    assert not parse_run_args(["--sig-proxy=false", "img"]).sig_proxy
    # a bare flag never takes the image for its value; the command's own flags stay its own
    opts = parse_run_args(["--sig-proxy", "img", "--sig-proxy=false"])
    assert opts.sig_proxy and opts.image == "img" and opts.command == ["--sig-proxy=false"]
    args = attach_parser().parse_args(["--sig-proxy=false", "--no-stdin", "web"])
    assert (args.sig_proxy, args.no_stdin, args.container) == (False, True, "web")


def test_run_refuses_bad_detach_keys_before_anything_is_made():
    with pytest.raises(UsageError, match="ctrl-zz"):
        parse_run_args(["-it", "--detach-keys", "ctrl-zz", "img"])
