"""Files of an image or a container that the host's side of minirun reads, outside any
container's limits (build's COPY --chown lookups, ...): a hostile file there must neither hang
the host's side nor fill its memory, nor lead it to a host file."""

from __future__ import annotations

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
