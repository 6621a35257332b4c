"""docker's -u rules against an image's passwd/group, and the capability set. Pure, no root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from minirun.errors import EXIT_RUNTIME, MinirunError
from minirun.runtime.privileges import CAPABILITIES, DEFAULT_CAPABILITIES, capability_mask, capability_number
from minirun.runtime.security import User, read_user_db, resolve_user

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
# a comment
app:x:1000:1000:App:/home/app:/bin/sh

broken:x:notanumber:1:::
app:x:1001:1001:second app, never matched:/nowhere:/bin/sh
"""

GROUP = """\
root:x:0:root
bin:x:1:root,daemon
wheel:x:10:root, app
app:x:1000:
staff:x:50:app
again:x:10:app
"""


@pytest.mark.parametrize(
    "spec, expected",
    [
        (None, User(0, 0, [0, 1, 10], "/root")),  # no -u: root, with root's groups
        ("", User(0, 0, [0, 1, 10], "/root")),
        ("root", User(0, 0, [0, 1, 10], "/root")),
        ("0", User(0, 0, [0, 1, 10], "/root")),  # a number finds its entry too
        ("app", User(1000, 1000, [10, 50], "/home/app")),  # first entry wins; gid 10 once
        ("1000", User(1000, 1000, [10, 50], "/home/app")),
        ("daemon", User(1, 1, [1], "/usr/sbin")),
        ("4242", User(4242, 0, [], "/")),  # a uid without an entry is allowed
        ("4242:4343", User(4242, 4343, [], "/")),
        ("app:staff", User(1000, 50, [], "/home/app")),  # an explicit group is the only one
        ("app:10", User(1000, 10, [], "/home/app")),
        ("app:777", User(1000, 777, [], "/home/app")),  # a gid without an entry is allowed
        (":staff", User(0, 50, [], "/root")),
        ("app:", User(1000, 1000, [10, 50], "/home/app")),
        ("app:staff:ignored", User(1000, 50, [], "/home/app")),
        ("+1000", User(1000, 1000, [10, 50], "/home/app")),  # Go's Atoi takes a sign
    ],
)
def test_docker_user_rules(spec: str | None, expected: User) -> None:
    assert resolve_user(spec, PASSWD, GROUP) == expected


def test_unknown_name_is_docker_error() -> None:
    with pytest.raises(MinirunError) as info:
        resolve_user("nobody2", PASSWD, GROUP)
    assert info.value.message == "unable to find user nobody2: no matching entries in passwd file"
    assert info.value.exit_code == EXIT_RUNTIME


def test_unknown_group_name_is_an_error() -> None:
    with pytest.raises(MinirunError, match="^unable to find group nogroup: no matching entries in group file$"):
        resolve_user("app:nogroup", PASSWD, GROUP)


@pytest.mark.parametrize("spec", ["-1", "2147483648", "1000:-5"])
def test_ids_out_of_range(spec: str) -> None:
    with pytest.raises(MinirunError, match="must be in range 0-2147483647"):
        resolve_user(spec, PASSWD, GROUP)


@pytest.mark.parametrize("spec", ["1_000", "１０００", " 1000"])
def test_only_plain_digits_are_numbers(spec: str) -> None:
    with pytest.raises(MinirunError, match="unable to find user"):
        resolve_user(spec, PASSWD, GROUP)


def test_malformed_line_matches_nothing() -> None:
    with pytest.raises(MinirunError, match="unable to find user broken"):
        resolve_user("broken", PASSWD, GROUP)


def test_no_passwd_file() -> None:
    assert resolve_user(None, "", "") == User(0, 0, [], "/")
    assert resolve_user("33:33", "", "") == User(33, 33, [], "/")
    with pytest.raises(MinirunError, match="unable to find user www-data"):
        resolve_user("www-data", "", "")


def test_read_user_db(tmp_path: Path) -> None:
    assert read_user_db(str(tmp_path)) == ("", "")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(PASSWD)
    assert read_user_db(str(tmp_path)) == (PASSWD, "")


def test_default_capabilities_are_podmans_11() -> None:
    """docker's 14 less the three podman drops: NET_RAW, MKNOD, AUDIT_WRITE."""
    docker = 0x00000000A80425FB
    dropped = capability_mask(["CAP_NET_RAW", "CAP_MKNOD", "CAP_AUDIT_WRITE"])
    assert len(set(DEFAULT_CAPABILITIES)) == len(DEFAULT_CAPABILITIES) == 11
    assert capability_mask(DEFAULT_CAPABILITIES) == docker & ~dropped == 0x800405FB  # podman 4.3's CapEff


def test_capability_names() -> None:
    assert capability_number("CAP_NET_RAW") == capability_number("net_raw") == 13
    assert sorted(CAPABILITIES.values()) == list(range(41))  # contiguous up to 6.x's last
    with pytest.raises(MinirunError, match="unknown capability"):
        capability_number("CAP_WIZARD")


def test_prctl_is_loaded_with_the_module_not_after_pivot_root() -> None:
    """After pivot_root the interpreter's site-packages are gone: a lazy import of python-prctl
    inside apply_security would fail in the container. rootfs, on every start path, stays without
    it; security takes only its C half (`_prctl`), not the Python half's ~0.8 ms of set-up."""
    code = (
        "import sys, minirun.runtime.rootfs; a = '_prctl' in sys.modules; "
        "import minirun.runtime.security; print(a, '_prctl' in sys.modules, 'prctl' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2]
    ).stdout
    assert out.split() == ["False", "True", "False"]


EVIL_PASSWD = "evil:x:4294967295:4294967295::/:/bin/sh\nhalf:x:1000:-1::/:/bin/sh\nok:x:1001:1001::/:/bin/sh\n"
EVIL_GROUP = "bad:x:4294967295:ok\n"


@pytest.mark.parametrize("spec", ["evil", "4294967295", "half", "ok", "ok:bad"])
def test_ids_from_the_images_files_are_range_checked(spec: str) -> None:
    """(uid_t)-1 from a passwd or group line would leave setresuid(2)/setresgid(2) unchanged: root."""
    with pytest.raises(MinirunError, match="must be in range 0-2147483647"):
        resolve_user(spec, EVIL_PASSWD, EVIL_GROUP)


def test_a_group_added_by_name_is_range_checked() -> None:
    from minirun.runtime.security import added_groups

    with pytest.raises(MinirunError, match="must be in range 0-2147483647"):
        added_groups(["bad"], EVIL_GROUP)
