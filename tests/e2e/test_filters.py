"""`ps --filter` and `images --filter` on real containers and images, each key alone and keys
together (docker: values of one key ORed, keys ANDed, labels all required)."""

from __future__ import annotations

import pytest


def ids(result) -> list[str]:
    assert result.code == 0, result.err
    return result.out.split()


@pytest.fixture
def three(cli, busybox):
    """web (running, labels, -p), job (exited 3), db (exited 0); newest last."""
    names = {}
    web = cli(
        "run",
        "-d",
        "--name",
        "web",
        "-l",
        "tier=front",
        "-l",
        "app=shop",
        "-p",
        "127.0.0.1::8080",
        "busybox",
        "sleep",
        "300",
    )
    assert web.code == 0, web.err
    names["web"] = web.out.strip()[:12]
    for name, code in (("job", 3), ("db", 0)):
        done = cli("run", "--name", name, "-l", "app=shop", "--network", "none", "busybox", "sh", "-c", f"exit {code}")
        assert done.code == code
        names[name] = cli("ps", "-a", "-q", "--filter", f"name=^/{name}$").out.strip()
    yield names
    cli("rm", "-f", "web", "job", "db")


def test_each_ps_key(cli, three):
    web, job, db = three["web"], three["job"], three["db"]
    assert ids(cli("ps", "-q", "-f", "name=web")) == [web]
    assert ids(cli("ps", "-aq", "-f", "id=" + job[:6])) == [job]
    assert ids(cli("ps", "-q", "-f", "status=exited")) == [db, job]  # status implies -a
    assert ids(cli("ps", "-aq", "-f", "exited=3")) == [job]
    assert ids(cli("ps", "-aq", "-f", "label=app=shop", "-f", "label=tier")) == [web]  # labels: all of them
    assert ids(cli("ps", "-aq", "-f", "label=app")) == [db, job, web]
    assert ids(cli("ps", "-aq", "-f", "before=db")) == [job, web]
    assert ids(cli("ps", "-aq", "-f", "since=web")) == [db, job]
    assert ids(cli("ps", "-aq", "-f", "ancestor=busybox")) == [db, job, web]
    assert ids(cli("ps", "-aq", "-f", "network=none")) == [db, job]
    assert ids(cli("ps", "-aq", "-f", "publish=8080")) == [web]
    assert ids(cli("ps", "-aq", "-f", "expose=8000-8100/tcp")) == [web]
    assert ids(cli("ps", "-aq", "-f", "health=none")) == [db, job, web]
    assert ids(cli("ps", "-aq", "-f", "is-task=true")) == []


def test_ps_keys_together(cli, three):
    web, db = three["web"], three["db"]
    # one key twice: either; two keys: both
    assert ids(cli("ps", "-aq", "-f", "name=^/web$", "-f", "name=^/db$")) == [db, web]
    assert ids(cli("ps", "-aq", "-f", "label=app=shop", "-f", "status=exited", "-f", "exited=0")) == [db]
    assert ids(cli("ps", "-q", "-f", "name=job")) == []  # without -a only running ones


@pytest.mark.parametrize(
    "value, message",
    [
        ("color=red", "invalid filter 'color'"),
        ("status=sleeping", "invalid filter 'status=sleeping'"),
        ("exited=x", "invalid filter 'exited=x'"),
        ("before=nothere", "No such container: nothere"),
        ("publish=99999", "invalid filter 'publish=99999'"),
    ],
)
def test_bad_ps_filters_are_one_line(cli, busybox, value, message):
    done = cli("ps", "-f", value)
    assert done.code == 125 and done.err == f"minirun: error: {message}\n"


def test_images_filters(cli, busybox):
    assert cli("tag", "busybox", "example/tool:1.0").code == 0
    base = cli("run", "--name", "base", "--network", "none", "busybox", "true")
    assert base.code == 0
    assert cli("commit", "-c", "LABEL kind=tool", "base", "labelled:2").code == 0
    assert cli("commit", "base").code == 0  # an untagged image: dangling
    cli("rm", "base")

    def refs(*filters: str) -> list[str]:
        args = [a for f in filters for a in ("--filter", f)]
        done = cli("images", "--format", "json", *args)
        assert done.code == 0, done.err
        rows = [__import__("json").loads(line) for line in done.out.splitlines()]
        return sorted(f"{r['Repository']}:{r['Tag']}" for r in rows)

    assert refs("reference=busybox") == ["busybox:latest"]
    assert refs("reference=*/*") == ["example/tool:1.0"]
    assert refs("reference=busybox", "reference=labelled") == ["busybox:latest", "labelled:2"]
    assert refs("label=kind=tool") == ["labelled:2"]
    assert refs("dangling=true") == ["<none>:<none>"]
    assert "<none>:<none>" not in refs("dangling=false")
    assert refs("before=labelled:2", "reference=busybox") == ["busybox:latest"]
    assert refs("since=busybox", "dangling=false") == ["labelled:2"]
    bad = cli("images", "--filter", "status=x")
    assert bad.code == 125 and bad.err == "minirun: error: invalid filter 'status'\n"


def test_network_ls_filters(cli, busybox):
    assert cli("network", "create", "filtnet").code == 0
    try:

        def names(*filters: str) -> list[str]:
            args = [a for f in filters for a in ("--filter", f)]
            done = cli("network", "ls", "--format", "json", *args)
            assert done.code == 0, done.err
            return sorted(__import__("json").loads(line)["Name"] for line in done.out.splitlines())

        assert names("type=custom") == ["filtnet"]
        assert names("type=builtin") == ["bridge", "host", "none"]
        assert names("driver=null") == ["none"]
        assert names("name=filt", "driver=bridge") == ["filtnet"]
        assert names("dangling=true") == ["filtnet"]  # no container on it
        assert cli("network", "list", "-q", "-f", "name=^filtnet$").out.count("\n") == 1  # the alias, same options
        bad = cli("network", "ls", "-f", "type=other")
        assert bad.code == 125 and bad.err == "minirun: error: invalid filter 'type=other'\n"
    finally:
        cli("network", "rm", "filtnet")


def test_image_prune_filters_by_label_and_age(cli, tmp_path):
    import io
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("file")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    (tmp_path / "rootfs.tar").write_bytes(data.getvalue())
    for name, label in [("kept", "keep=yes"), ("other", "keep=no"), ("plain", "")]:
        change = ["-c", f"LABEL {label}"] if label else []
        assert cli("import", *change, str(tmp_path / "rootfs.tar"), name).code == 0

    def names() -> list[str]:
        return sorted(line.split()[0] for line in cli("images").out.splitlines()[1:])

    assert cli("image", "prune", "-af", "--filter", "until=1h").out.startswith("Total reclaimed space")
    assert names() == ["kept", "other", "plain"]  # all three newer than an hour ago
    pruned = cli("image", "prune", "-af", "--filter", "label!=keep=yes", "--filter", "label=keep")
    assert pruned.code == 0 and pruned.out.startswith("Deleted Images:\nuntagged: other:latest\n"), pruned
    assert names() == ["kept", "plain"]
    assert cli("image", "prune", "-af", "--filter", "label!=keep").code == 0
    assert names() == ["kept"]
    refused = cli("image", "prune", "-af", "--filter", "reference=kept")
    assert (refused.code, refused.err) == (125, "minirun: error: invalid filter 'reference'\n")
    assert names() == ["kept"]
