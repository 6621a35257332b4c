"""The mount(2) option string for overlayfs: order, escaping, limits. Pure, no root."""

from __future__ import annotations

import pytest

from minirun.errors import MinirunError
from minirun.runtime.overlay import MAX_LOWERS, OPTIONS_MAX, overlay_options


def test_lowers_keep_their_order_topmost_first() -> None:
    opts = overlay_options(["l/top", "l/mid", "l/base"], "c/upper", "c/work")
    assert opts == "lowerdir=l/top:l/mid:l/base,upperdir=c/upper,workdir=c/work,index=off"


def test_single_lower() -> None:
    assert overlay_options(["/a"], "/u", "/w") == "lowerdir=/a,upperdir=/u,workdir=/w,index=off"


@pytest.mark.parametrize(
    "raw, escaped",
    [
        ("/x/a:b", "/x/a\\:b"),  # ':' would split the layer list
        ("/x/a,b", "/x/a\\,b"),  # ',' would end the option
        ("/x/a\\b", "/x/a\\\\b"),  # '\' is the escape character itself
        ("/x/a::b", "/x/a\\:\\:b"),  # '::' would start data-only layers
        ("/x/k=v", "/x/k=v"),  # only the first '=' of an option splits key from value
        ("/x/\u00e9", "/x/\u00e9"),
    ],
)
def test_special_characters_are_escaped_in_every_dir(raw: str, escaped: str) -> None:
    opts = overlay_options([raw, "/plain"], raw, raw)
    assert opts == f"lowerdir={escaped}:/plain,upperdir={escaped},workdir={escaped},index=off"


def test_escaping_does_not_split_layers() -> None:
    opts = overlay_options(["/a:b", "/c"], "/u", "/w")
    lowerdir = opts.split(",")[0].removeprefix("lowerdir=")
    assert lowerdir == "/a\\:b:/c"


@pytest.mark.parametrize("bad", ["", "/a\0b"])
def test_unusable_paths_are_refused(bad: str) -> None:
    with pytest.raises(MinirunError, match="overlay"):
        overlay_options([bad], "/u", "/w")
    with pytest.raises(MinirunError, match="overlay"):
        overlay_options(["/l"], bad, "/w")


def test_no_lowers_is_a_clear_error() -> None:
    with pytest.raises(MinirunError, match="at least one lower"):
        overlay_options([], "/u", "/w")


def test_more_than_the_kernel_stack_is_refused() -> None:
    assert MAX_LOWERS == 500
    overlay_options(["l"] * MAX_LOWERS, "u", "w")
    with pytest.raises(MinirunError, match="501 layers.*at most 500"):
        overlay_options(["l"] * (MAX_LOWERS + 1), "u", "w")


def _padded(total_len: int) -> str:
    """Options of exactly total_len bytes, padding the upper dir with slashes."""
    base = len(overlay_options(["l"], "u", "w"))
    return overlay_options(["l"], "u" + "/" * (total_len - base), "w")


def test_one_page_including_the_nul_fits() -> None:
    assert OPTIONS_MAX == 4096
    assert len(_padded(OPTIONS_MAX - 1)) == OPTIONS_MAX - 1


def test_a_byte_over_one_page_is_refused() -> None:
    # the kernel would silently cut the string at byte 4095, so refusing is the only safe answer
    with pytest.raises(MinirunError, match=r"4097 bytes; mount\(2\) takes 4096"):
        _padded(OPTIONS_MAX)


def test_the_limit_counts_encoded_bytes_not_characters() -> None:
    base = len(overlay_options(["l"], "u", "w").encode())
    room = OPTIONS_MAX - 1 - base
    overlay_options(["l"], "u" + "/" * room, "w")
    with pytest.raises(MinirunError, match="bytes"):
        # one 2-byte character in place of one slash pushes it over
        overlay_options(["l"], "u" + "/" * (room - 1) + "\u00e9", "w")


def test_escapes_count_towards_the_limit() -> None:
    base = len(overlay_options(["l"], "u", "w"))
    room = OPTIONS_MAX - 1 - base
    overlay_options(["l"], "u" + "/" * room, "w")
    with pytest.raises(MinirunError, match="bytes"):
        overlay_options(["l"], "u" + "/" * (room - 1) + ":", "w")  # ':' costs two bytes


def test_130_short_links_fit_in_one_page() -> None:
    # the store's l/<26-char id> links, relative to its root, as docker's overlay2 keeps them
    lowers = [f"l/{i:026d}" for i in range(130)]
    assert len(overlay_options(lowers, "containers/c/upper", "containers/c/work")) < OPTIONS_MAX
    with pytest.raises(MinirunError, match="new mount API"):
        overlay_options([f"l/{i:026d}" for i in range(500)], "u", "w")
