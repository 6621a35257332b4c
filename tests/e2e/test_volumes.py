"""Volumes as a docker user meets them: `volume` verbs, named and anonymous volumes, the image's
VOLUME, docker's copy-up, --mount, --volumes-from, rm -v and --rm, the volume-in-use wall, the
events, and a read-only volume attacked from inside. Few container starts: each test checks
several things in the containers it runs."""

from __future__ import annotations

import ctypes
import io
import json
import os
import stat
import subprocess
import tarfile
import time

import pytest

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def ok(result):
    assert result.code == 0, f"exit {result.code}\nstdout: {result.out}\nstderr: {result.err}"
    return result


def inspect(cli, *args: str) -> list[dict]:
    return json.loads(ok(cli("inspect", *args)).out)


def volume(cli, name: str) -> dict:
    return json.loads(ok(cli("volume", "inspect", name)).out)[0]


def names(cli, *args: str) -> list[str]:
    return ok(cli("volume", "ls", "-q", *args)).out.split()


def volume_events(cli) -> list[tuple[str, str]]:
    out = ok(cli("events", "--since", "1h", "--until", "0s", "--format", "json", "--filter", "type=volume")).out
    return [(e["Action"], e["Actor"]["ID"]) for e in map(json.loads, out.splitlines())]


def one_line_error(result, text: str) -> None:
    assert result.code == 125 and result.err == f"minirun: error: {text}\n", result


def test_a_named_volume_is_shared_outlives_its_container_and_is_refused_while_used(cli, busybox, tmp_path):
    (tmp_path / "ro.txt").write_text("host\n")
    script = (
        "echo one > /data/f; echo s > /scratch/s && df -k /scratch | tail -1 | awk '{print $2}'; "
        "cat /host/ro.txt; touch /host/x 2>/dev/null || echo bind-ro; echo anon > /anon/a"
    )
    first = cli(
        "run", "--name", "web", "--network", "none", "-v", "data:/data", "-v", "/anon",
        "--mount", "type=tmpfs,dst=/scratch,tmpfs-size=1m",
        "--mount", f"type=bind,src={tmp_path},dst=/host,readonly",
        "busybox", "sh", "-c", script,
    )  # fmt: skip
    assert ok(first).out == "1024\nhost\nbind-ro\n"
    w = inspect(cli, "web")[0]
    data = volume(cli, "data")
    anon = next(m for m in w["Mounts"] if m["Destination"] == "/anon")
    assert sorted(w["Mounts"], key=lambda m: m["Destination"]) == [
        {**anon, "Type": "volume", "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""},
        {
            "Type": "volume", "Name": "data", "Source": data["Mountpoint"], "Destination": "/data",
            "Driver": "local", "Mode": "z", "RW": True, "Propagation": "",
        },
        {"Type": "bind", "Source": str(tmp_path), "Destination": "/host", "Mode": "", "RW": False, "Propagation": "rprivate"},
        {"Type": "tmpfs", "Source": "", "Destination": "/scratch", "Mode": "", "RW": True, "Propagation": ""},
    ]  # fmt: skip
    assert len(anon["Name"]) == 64 and anon["Source"] == data["Mountpoint"].replace(
        "/data/_data", f"/{anon['Name']}/_data"
    )
    assert w["HostConfig"]["Binds"] == ["data:/data"] and w["Config"]["Volumes"] == {"/anon": {}}

    # a second container shares them all but the tmpfs, read-only as --volumes-from :ro asks
    second = cli(
        "run", "--rm", "--network", "none", "--volumes-from", "web:ro", "busybox", "sh", "-c",
        "cat /data/f /anon/a; ls /scratch 2>/dev/null | wc -l; echo two > /data/g || echo data-ro",
    )  # fmt: skip
    assert ok(second).out == "one\nanon\n0\ndata-ro\n"

    # in use by w (not running): refused, -f or not, naming the volume and the container
    w_id = w["Id"]
    for args in (["volume", "rm", "data"], ["volume", "rm", "-f", "data"]):
        one_line_error(cli(*args), f"remove data: volume is in use - [{w_id}]")
    assert ok(cli("ps", "-aq", "--no-trunc", "--filter", "volume=data")).out == f"{w_id}\n"
    assert ok(cli("ps", "-aq", "--no-trunc", "--filter", "volume=/anon")).out == f"{w_id}\n"
    mounts = ok(cli("ps", "-a", "--no-trunc", "--format", "{{.LocalVolumes}} {{.Mounts}}")).out
    assert mounts == f"2 data,{anon['Name']},,{tmp_path}\n"  # a tmpfs has no name, nor a source
    df = ok(cli("system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}} {{.Size}} {{.Reclaimable}}"))
    assert "Local Volumes 2 2 9B 0B (0%)\n" in df.out  # "one\n" and "anon\n", both in use
    rows = [line.split() for line in ok(cli("system", "df", "-v")).out.splitlines()]
    assert [anon["Name"], "1", "5B"] in rows and ["data", "1", "4B"] in rows

    # the container goes, the volumes stay (no -v), with what was written
    ok(cli("rm", "web"))
    assert sorted(names(cli, "--filter", "dangling=true")) == sorted(["data", anon["Name"]])
    assert open(os.path.join(data["Mountpoint"], "f")).read() == "one\n"
    assert ok(cli("volume", "rm", "data", anon["Name"])).out == f"data\n{anon['Name']}\n"
    assert names(cli) == []
    mounted = [(a, n) for a, n in volume_events(cli) if n == "data"]
    assert mounted == [("create", "data")] + [("mount", "data"), ("unmount", "data")] * 2 + [("destroy", "data")]


def _image_tar(outside: str) -> bytes:
    """The image's content, with owners, modes, an xattr, a hardlink, a fifo, a setuid file and
    links that point out of the volume, and `outside`: a link to a path of the host's."""

    def entry(name: str, kind: bytes, mode: int, uid: int = 5, gid: int = 6, **extra) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, 1_600_000_000
        for key, value in extra.items():
            setattr(info, key, value)
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(entry("srv/content", tarfile.DIRTYPE, 0o750))
        data = entry("srv/content/a", tarfile.REGTYPE, 0o640, size=4)
        data.pax_headers = {"SCHILY.xattr.user.note": "hi"}
        tar.addfile(data, io.BytesIO(b"img\n"))
        tar.addfile(entry("srv/content/hard", tarfile.LNKTYPE, 0o640, linkname="srv/content/a"))
        tar.addfile(entry("srv/content/link", tarfile.SYMTYPE, 0o777, linkname="a"))
        tar.addfile(entry("srv/content/escape", tarfile.SYMTYPE, 0o777, linkname="/etc"))
        tar.addfile(entry("srv/content/up", tarfile.SYMTYPE, 0o777, linkname="../../../../../../etc/passwd"))
        tar.addfile(entry("srv/content/fifo", tarfile.FIFOTYPE, 0o600))
        tar.addfile(entry("srv/content/sub", tarfile.DIRTYPE, 0o700, uid=7, gid=7))
        tar.addfile(entry("srv/content/sub/setuid", tarfile.REGTYPE, 0o4755, uid=0, gid=0, size=1), io.BytesIO(b"x"))
        tar.addfile(entry("outside", tarfile.SYMTYPE, 0o777, uid=0, gid=0, linkname=f"/../../..{outside}"))
    return buffer.getvalue()


@pytest.fixture
def volume_image(cli, busybox, tmp_path):
    """An image whose VOLUMEs cover content (copy-up), an empty dir of mode 0700 (/root), and a
    link into the host (`outside`, whose host path holds a file the copy must never see)."""
    host_dir = tmp_path / "host-side"
    host_dir.mkdir()
    (host_dir / "secret").write_text("host's\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "content.tar").write_bytes(_image_tar(str(host_dir)))
    (ctx / "Containerfile").write_text("FROM busybox\nADD content.tar /\nVOLUME /srv/content /root /outside\n")
    ok(cli("build", "-q", "-t", "vimg", str(ctx)))
    return host_dir


def _by_destination(mounts: list[dict]) -> dict[str, dict]:
    return {m["Destination"]: m for m in mounts}


def test_copy_up_fills_new_empty_volumes_once_and_rm_v_takes_the_anonymous_ones(cli, volume_image):
    host_dir = volume_image
    script = "cat /srv/content/a; readlink /srv/content/escape; ls -A /outside; echo mine > /outside/new"
    assert ok(cli("run", "--name", "v1", "--network", "none", "vimg", "sh", "-c", script)).out == "img\n/etc\n"
    mounts = _by_destination(inspect(cli, "v1")[0]["Mounts"])
    assert sorted(mounts) == ["/outside", "/root", "/srv/content"]
    assert all(m["Type"] == "volume" and m["Mode"] == "" and len(m["Name"]) == 64 for m in mounts.values())
    # the image's content, copied with what makes it what it is
    content = mounts["/srv/content"]["Source"]
    top = os.lstat(content)
    assert (top.st_uid, top.st_gid, stat.S_IMODE(top.st_mode)) == (5, 6, 0o750)  # the path's own owner and mode
    a, hard = os.lstat(f"{content}/a"), os.lstat(f"{content}/hard")
    assert (a.st_uid, a.st_gid, stat.S_IMODE(a.st_mode), a.st_mtime) == (5, 6, 0o640, 1_600_000_000)
    assert (a.st_ino, a.st_nlink) == (hard.st_ino, 2) and os.getxattr(f"{content}/a", "user.note") == b"hi"
    assert [os.readlink(f"{content}/{n}") for n in ("link", "escape", "up")] == [
        "a",
        "/etc",
        "../../../../../../etc/passwd",
    ]
    assert stat.S_ISFIFO(os.lstat(f"{content}/fifo").st_mode)
    sub, setuid = os.lstat(f"{content}/sub"), os.lstat(f"{content}/sub/setuid")
    assert (sub.st_uid, stat.S_IMODE(sub.st_mode), stat.S_IMODE(setuid.st_mode)) == (7, 0o700, 0o4755)
    assert stat.S_IMODE(os.lstat(mounts["/root"]["Source"]).st_mode) == 0o700  # an empty dir: its mode alone
    # the link into the host resolved in the container's root: the host's dir saw nothing, nor was copied
    assert os.listdir(mounts["/outside"]["Source"]) == ["new"] and os.listdir(host_dir) == ["secret"]

    # a volume with anything in it is left alone; volume-nocopy leaves a new one empty; --rm takes
    # this container's anonymous volumes (/root, /outside) with it, and nobody else's
    filled = volume(cli, ok(cli("volume", "create", "filled")).out.strip())["Mountpoint"]
    with open(f"{filled}/mine", "w") as f:
        f.write("mine\n")
    second = cli(
        "run", "--rm", "--network", "none", "-v", "filled:/srv/content", "-v", "sb:/sbin",
        "--mount", "type=volume,source=nc,target=/usr/bin,volume-nocopy", "vimg", "sh", "-c",
        "ls /srv/content; ls /usr/bin | wc -l; stat -c %h /sbin/$(ls /sbin | head -1); ls /sbin | wc -l",
    )  # fmt: skip
    out = ok(second).out.split()
    assert out[:2] == ["mine", "0"] and out[2] == out[3]  # /sbin's applets: one inode, still
    assert int(out[3]) > 1 and os.listdir(filled) == ["mine"]
    anonymous = sorted(m["Name"] for m in mounts.values())
    assert sorted(names(cli)) == sorted(anonymous + ["filled", "nc", "sb"])

    # rm -v: the anonymous volumes go, the named ones stay
    ok(cli("rm", "-v", "v1"))
    assert sorted(names(cli)) == ["filled", "nc", "sb"]
    # a detached --rm container's monitor takes its anonymous volumes with it (VOLUMEs and -v /x)
    ok(cli("run", "-d", "--rm", "--network", "none", "-v", "sb:/sbin", "-v", "/x", "vimg", "true"))
    deadline = time.monotonic() + 30
    while sorted(names(cli)) != ["filled", "nc", "sb"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(names(cli)) == ["filled", "nc", "sb"] and ok(cli("ps", "-aq")).out == ""


@pytest.fixture
def volume_with_submount(cli):
    """A named volume with a tmpfs mounted below its data (not read-only, not nodev): the
    test's own mount, unmounted after."""
    data = volume(cli, ok(cli("volume", "create", "deep")).out.strip())["Mountpoint"]
    os.mkdir(f"{data}/sub")
    assert _libc.mount(b"tmpfs", f"{data}/sub".encode(), b"tmpfs", 0, b"size=1m") == 0, os.strerror(ctypes.get_errno())
    yield data
    subprocess.run(["umount", "-l", f"{data}/sub"], check=True)


def test_a_read_only_volume_is_read_only_all_the_way_down(cli, busybox, volume_with_submount):
    """-v NAME:DST:ro and --mount ...,readonly are read-only below too: a mount under the
    volume's data stays unwritable (and nosuid, nodev). The same volume read-write at /rw, in
    the same container, shows the ro is what refused the writes."""
    script = (
        "for f in /data/f /data/sub/f /ro2/sub/f /rw/sub/f; do echo x > $f 2>/dev/null && echo $f wrote; done; "
        "grep -E ' /(data|ro2)/sub ' /proc/self/mountinfo | cut -d' ' -f6"
    )
    out = cli(
        "run", "--rm", "--network", "none", "-v", "deep:/data:ro", "-v", "deep:/rw",
        "--mount", "type=volume,src=deep,dst=/ro2,readonly", "busybox", "sh", "-c", script,
    )  # fmt: skip
    lines = ok(out).out.splitlines()
    assert lines[0] == "/rw/sub/f wrote" and len(lines) == 3
    assert all({"ro", "nosuid", "nodev"} <= set(flags.split(",")) for flags in lines[1:])
    assert os.listdir(f"{volume_with_submount}/sub") == ["f"]


def test_volume_verbs_outputs_errors_and_prune(cli, isolated_store):
    bad_name = cli("run", "--name", "b@d", "-v", "/anon", "busybox", "true")  # refused before any volume is made
    assert bad_name.code == 125 and "Invalid container name (b@d)" in bad_name.err
    assert ok(cli("volume", "ls", "-q")).out == ""
    ok(cli("volume", "create", "--label", "team=a", "--label", "keep", "alpha"))
    assert ok(cli("volume", "create", "alpha")).out == "alpha\n"  # the same volume again: docker's answer
    ok(cli("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", "fast"))
    anon = ok(cli("volume", "create")).out.strip()
    assert len(anon) == 64 and all(c in "0123456789abcdef" for c in anon)
    alpha, fast, anonymous = json.loads(ok(cli("volume", "inspect", "alpha", "fast", anon)).out)
    assert alpha == {
        "CreatedAt": alpha["CreatedAt"],
        "Driver": "local",
        "Labels": {"team": "a", "keep": ""},
        "Mountpoint": str(isolated_store / "volumes" / "alpha" / "_data"),
        "Name": "alpha",
        "Options": {},
        "Scope": "local",
    }
    assert time.time() - time.mktime(time.strptime(alpha["CreatedAt"][:19], "%Y-%m-%dT%H:%M:%S")) < 3600 * 24
    assert fast["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert anonymous["Labels"] == {"com.docker.volume.anonymous": ""}
    table = ok(cli("volume", "ls")).out.splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert [row.split() for row in table[1:]] == [["local", n] for n in sorted([anon, "alpha", "fast"])]
    # ^fas: no 64-hex name can match it (^fa matched the anonymous volume in 1 run of 256)
    assert names(cli, "--filter", "name=^fas", "--filter", "driver=local") == ["fast"]
    labelled = cli("volume", "ls", "--format", "{{.Name}}: {{.Labels}}", "-f", "label=keep", "-f", "label=team=a")
    assert ok(labelled).out == "alpha: keep=,team=a\n"
    table = ok(cli("volume", "ls", "--format", "table {{.Name}}\t{{.Scope}}", "-f", "name=alpha")).out.splitlines()
    assert [row.split() for row in table] == [["VOLUME", "NAME", "SCOPE"], ["alpha", "local"]]
    assert (
        ok(cli("volume", "inspect", "-f", "{{.Name}} {{.Labels.team}} {{.Options}}", "alpha")).out == "alpha a map[]\n"
    )

    for args, text in [
        (["volume", "create", "a/b"], '"a/b" includes invalid characters for a local volume name'),
        (["volume", "create", "-d", "nfs", "x1"], 'error looking up volume plugin nfs: plugin "nfs" not found'),
        (["volume", "inspect", "../containers"], "get ../containers: no such volume"),
        (["volume", "rm", "nope"], "get nope: no such volume"),
    ]:
        result = cli(*args)
        assert result.code == 125 and result.err.startswith("minirun: error: ") and text in result.err, result
        assert result.err.count("\n") == 1
    assert ok(cli("volume", "rm", "-f", "nope")).out == "nope\n"

    with open(f"{alpha['Mountpoint']}/data", "wb") as f:
        f.write(b"x" * 1000)
    df = ok(cli("system", "df", "--format", "{{.Type}}: {{.TotalCount}} {{.Active}} {{.Size}} {{.Reclaimable}}"))
    assert "Local Volumes: 2 0 1kB 1kB (100%)\n" in df.out  # `fast` has driver options: docker leaves it out
    # prune: anonymous only (system prune --volumes as well); -a: every unused one but those with
    # driver options; label!= keeps
    assert f"Deleted Volumes:\n{anon}\n\n" in ok(cli("system", "prune", "-f", "--volumes")).out
    ok(cli("volume", "create", "beta"))
    assert ok(cli("volume", "prune", "-af", "--filter", "label!=keep")).out == (
        "Deleted Volumes:\nbeta\n\nTotal reclaimed space: 0B\n"
    )
    assert ok(cli("volume", "prune", "-a", "-f")).out == "Deleted Volumes:\nalpha\n\nTotal reclaimed space: 1kB\n"
    assert names(cli) == ["fast"]
    events = volume_events(cli)
    assert ("create", "alpha") in events and ("destroy", "alpha") in events and ("prune", "") in events
    assert events.count(("create", "alpha")) == 1
