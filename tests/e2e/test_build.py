"""`build` as a user types it, as root, with real containers: the seed's myapp, every instruction,
COPY/ADD, the layer cache, ARGs, and failures that leave nothing behind."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import Result, require_root

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _root():
    require_root()


@pytest.fixture
def mr(cli):
    return cli


def context(tmp_path: Path, containerfile: str, files: dict[str, str | bytes] | None = None) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Containerfile").write_text(containerfile)
    for name, data in (files or {}).items():
        path = ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return ctx


def ok(result: Result) -> Result:
    assert result.code == 0, f"exit {result.code}\nstdout: {result.out}\nstderr: {result.err}"
    return result


def image_config(mr, name: str) -> dict:
    return json.loads(ok(mr("inspect", "--type", "image", name)).out)[0]


def history(mr, name: str) -> list[dict]:
    return [json.loads(line) for line in ok(mr("history", "--no-trunc", "--format", "json", name)).out.splitlines()]


def stored_config(store_root: Path, image_id: str) -> dict:
    return json.loads((store_root / "images" / (image_id.split(":")[-1] + ".json")).read_text())


def leftovers(store_root: Path) -> list[str]:
    """Containers and staged (unfinished) layers: what a build must never leave behind."""
    found = [f"container {p.name}" for p in (store_root / "containers").iterdir()]
    found += [f"staged layer {p.name}" for p in (store_root / "layers").iterdir() if p.name.startswith(".tmp-")]
    return found


# -- the seed's example ------------------------------------------------------------------------
def test_myapp_build_history_and_run(mr, isolated_store):
    built = ok(mr("build", "-t", "myapp:1.0", str(REPO / "images" / "myapp")))
    image_id = image_config(mr, "myapp:1.0")["Id"]
    assert built.out.splitlines() == [f"Successfully built {image_id[7:19]}", "Successfully tagged myapp:1.0"]

    lines = ok(mr("history", "myapp:1.0")).out.splitlines()
    assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    rows = lines[1:]
    assert len(rows) == 4
    assert all(not row.startswith("<missing>") for row in rows), "every step is a stored image"
    by = lines[0].index("CREATED BY")
    size = lines[0].index("SIZE")
    assert rows[0][by:size].strip() == '/bin/sh -c #(nop)  CMD ["sleep" "100000"]'
    assert rows[1][by:size].rstrip() == "/bin/sh -c echo v2 > /etc/config.yaml && rm …"
    assert rows[2][by:size].strip() == "/bin/sh -c echo v1 > /etc/config.yaml"
    assert [row[size:].split()[0] for row in rows[:3]] == ["0B", "3B", "3B"]
    assert rows[0].startswith(image_id[7:19])

    config = image_config(mr, "myapp:1.0")
    assert config["Config"]["Cmd"] == ["sleep", "100000"]
    assert len(config["RootFS"]["Layers"]) == 3  # busybox + two RUN layers; CMD adds none
    assert ok(mr("run", "--rm", "myapp:1.0", "cat", "/etc/config.yaml")).out == "v2\n"
    assert mr("run", "--rm", "myapp:1.0", "ls", "/etc/group").code != 0
    assert leftovers(isolated_store) == []

    container = ok(mr("run", "-d", "--name", "myapp", "myapp:1.0")).out.strip()
    try:
        ps = ok(mr("ps")).out
        assert "myapp:1.0" in ps and '"sleep 100000"' in ps and "Up" in ps
    finally:
        ok(mr("rm", "-f", container))


# -- instructions ------------------------------------------------------------------------------
EVERY = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS main
LABEL org.example.name="every instruction" \\
      version=1
ARG GREETING=hello
ENV APP=/srv/app \\
    NAME="${GREETING} world"
WORKDIR $APP
# a comment between instructions
COPY hello.txt .
ADD note.txt notes/
RUN echo "$NAME" > greeting.txt
RUN ["sh", "-c", "pwd > /pwd.txt"]
USER nobody
EXPOSE 80 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGQUIT
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT ["cat"]
CMD ["greeting.txt"]
"""


def test_every_instruction(mr, tmp_path, isolated_store):
    ctx = context(tmp_path, EVERY, {"hello.txt": "hi\n", "note.txt": "a note\n"})
    ok(mr("build", "-t", "every", str(ctx)))
    config = image_config(mr, "every")["Config"]
    assert config["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "APP=/srv/app",
        "NAME=hello world",
    ]
    assert config["Labels"] == {"org.example.name": "every instruction", "version": "1"}
    assert config["WorkingDir"] == "/srv/app"
    assert config["User"] == "nobody"
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGQUIT"
    assert config["Shell"] == ["/bin/sh", "-ec"]
    assert config["Entrypoint"] == ["cat"]
    assert config["Cmd"] == ["greeting.txt"]
    assert "GREETING" not in json.dumps(config["Env"])  # an ARG is not part of the image

    created_by = [row["CreatedBy"] for row in reversed(history(mr, "every"))][1:]
    copy_rows = [c for c in created_by if "#(nop) COPY" in c or "#(nop) ADD" in c]
    assert created_by[:4] == [
        "/bin/sh -c #(nop)  LABEL org.example.name=every instruction version=1",
        "/bin/sh -c #(nop)  ARG GREETING=hello",
        "/bin/sh -c #(nop)  ENV APP=/srv/app NAME=hello world",
        "/bin/sh -c #(nop) WORKDIR /srv/app",
    ]
    assert copy_rows[0].startswith("/bin/sh -c #(nop) COPY file:") and copy_rows[0].endswith(" in . ")
    assert copy_rows[1].startswith("/bin/sh -c #(nop) ADD file:") and copy_rows[1].endswith(" in notes/ ")
    assert created_by[6:] == [
        '|1 GREETING=hello /bin/sh -c echo "$NAME" > greeting.txt',
        "|1 GREETING=hello sh -c pwd > /pwd.txt",
        "/bin/sh -c #(nop)  USER nobody",
        "/bin/sh -c #(nop)  EXPOSE 80 53/udp",
        "/bin/sh -c #(nop)  VOLUME [/data]",
        "/bin/sh -c #(nop)  STOPSIGNAL SIGQUIT",
        "/bin/sh -ec #(nop)  SHELL [/bin/sh -ec]",
        '/bin/sh -ec #(nop)  ENTRYPOINT ["cat"]',
        '/bin/sh -ec #(nop)  CMD ["greeting.txt"]',
    ]
    assert ok(mr("run", "--rm", "every")).out == "hello world\n"
    out = ok(mr("run", "--rm", "--entrypoint", "cat", "every", "/pwd.txt", "hello.txt", "notes/note.txt")).out
    assert out == "/srv/app\nhi\na note\n"

    document = stored_config(isolated_store, image_config(mr, "every")["Id"])
    entries = document["history"][1:]
    layered = [e["created_by"] for e in entries if not e.get("empty_layer")]
    assert len(layered) == 4 == len(document["rootfs"]["diff_ids"]) - 1  # COPY, ADD, two RUNs
    assert all("#(nop)" in e["created_by"] for e in entries if e.get("empty_layer"))


def test_entrypoint_keeps_a_cmd_of_the_same_stage_only(mr, tmp_path):
    ctx = context(tmp_path, 'FROM busybox\nENTRYPOINT ["echo"]\n')
    ok(mr("build", "-t", "ep1", str(ctx)))
    assert "Cmd" not in image_config(mr, "ep1")["Config"] or not image_config(mr, "ep1")["Config"]["Cmd"]
    (ctx / "Containerfile").write_text('FROM busybox\nCMD ["hi"]\nENTRYPOINT ["echo"]\n')
    ok(mr("build", "-t", "ep2", str(ctx)))
    assert image_config(mr, "ep2")["Config"]["Cmd"] == ["hi"]
    assert ok(mr("run", "--rm", "ep2")).out == "hi\n"


def test_labels_from_the_flag_go_on_the_last_step(mr, tmp_path):
    ctx = context(tmp_path, 'FROM busybox\nLABEL kept=file shared=file\nCMD ["true"]\n')
    built = ok(mr("build", "--label", "shared=flag", "--label", "added=yes", "-t", "labelled", str(ctx)))
    assert "Successfully tagged labelled:latest" in built.out
    labels = image_config(mr, "labelled")["Config"]["Labels"]
    assert labels == {"kept": "file", "shared": "flag", "added": "yes"}


def test_shell_form_cmd_and_continuations(mr, tmp_path):
    ctx = context(
        tmp_path, "FROM busybox\nRUN echo one \\\n  two \\\n# dropped comment\n  three > /words\nCMD cat /words\n"
    )
    built = ok(mr("build", "--progress=plain", "-t", "cont", str(ctx)))
    assert "Step 2/3 : RUN echo one   two   three > /words" in built.out
    assert image_config(mr, "cont")["Config"]["Cmd"] == ["/bin/sh", "-c", "cat /words"]
    assert ok(mr("run", "--rm", "cont")).out == "one two three\n"


# -- COPY and ADD ------------------------------------------------------------------------------
def _tar_gz(members: dict[str, bytes], owner: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        dirs = {"pkg": tarfile.DIRTYPE}
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o750, owner, owner
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), 0o640, owner, owner
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def test_copy_and_add_with_chown_and_a_tar(mr, tmp_path, isolated_store):
    ctx = context(
        tmp_path,
        """\
FROM busybox
COPY --chown=nobody:nobody tree /opt/tree/
COPY --chown=1234:99 single.txt /opt/renamed.txt
COPY single.txt tree/sub/deep.txt /multi/
ADD archive.tar.gz /unpacked/
ADD --chown=5:6 archive.tar.gz /unpacked-chowned
ADD single.txt /added/
COPY dir-link /via-link/
""",
        {
            "single.txt": "one\n",
            "tree/a.txt": "aaa\n",
            "tree/sub/deep.txt": "deep\n",
            "archive.tar.gz": _tar_gz({"pkg/inside.txt": b"from the tar\n"}, owner=7),
        },
    )
    os.chmod(ctx / "tree" / "a.txt", 0o600)
    os.symlink("a.txt", ctx / "tree" / "link")
    os.symlink("tree", ctx / "dir-link")  # a named source that is a symlink is followed, in the context
    ok(mr("build", "-t", "copies", str(ctx)))
    script = (
        "cd / && stat -c '%n %u:%g %a' opt/tree opt/tree/a.txt opt/tree/sub opt/tree/sub/deep.txt "
        "opt/renamed.txt multi/single.txt multi/deep.txt unpacked/pkg unpacked/pkg/inside.txt "
        "unpacked-chowned/pkg/inside.txt added/single.txt via-link/a.txt && readlink opt/tree/link "
        "&& cat unpacked/pkg/inside.txt"
    )
    out = ok(mr("run", "--rm", "copies", "sh", "-c", script)).out.splitlines()
    assert out == [
        "opt/tree 65534:65534 755",
        "opt/tree/a.txt 65534:65534 600",
        "opt/tree/sub 65534:65534 755",
        "opt/tree/sub/deep.txt 65534:65534 644",
        "opt/renamed.txt 1234:99 644",
        "multi/single.txt 0:0 644",
        "multi/deep.txt 0:0 644",
        "unpacked/pkg 7:7 750",
        "unpacked/pkg/inside.txt 7:7 640",
        "unpacked-chowned/pkg/inside.txt 5:6 640",
        "added/single.txt 0:0 644",
        "via-link/a.txt 0:0 600",
        "a.txt",
        "from the tar",
    ]
    # a parent dir the image has keeps its owner and mode (busybox's /tmp is 1777)
    ctx2 = context(tmp_path / "two", "FROM busybox\nCOPY single.txt /tmp/\n", {"single.txt": "x\n"})
    ok(mr("build", "-t", "tmpcopy", str(ctx2)))
    assert ok(mr("run", "--rm", "tmpcopy", "stat", "-c", "%a %u", "/tmp")).out == "1777 0\n"
    assert leftovers(isolated_store) == []


def test_copy_refuses_sources_outside_the_context(mr, tmp_path, isolated_store):
    (tmp_path / "secret").write_text("no\n")
    ctx = context(tmp_path, "FROM busybox\nCOPY ../secret /\n")
    result = mr("build", str(ctx))
    assert result.code == 125
    assert result.err == "minirun: error: COPY failed: forbidden path outside the build context: ../secret ()\n"
    # a symlink pointing out resolves inside the context (docker's rule), where there is nothing
    os.symlink(str(tmp_path / "secret"), ctx / "escape")
    (ctx / "Containerfile").write_text("FROM busybox\nCOPY escape /\n")
    result = mr("build", str(ctx))
    assert result.code == 125 and "file not found in build context" in result.err
    assert len(result.err.splitlines()) == 1
    assert leftovers(isolated_store) == []


def test_copy_wildcards_and_multiple_sources_need_a_dir(mr, tmp_path):
    ctx = context(tmp_path, "FROM busybox\nCOPY *.txt /texts/\n", {"a.txt": "a", "b.txt": "b", "c.md": "c"})
    ok(mr("build", "-t", "glob", str(ctx)))
    assert ok(mr("run", "--rm", "glob", "ls", "/texts")).out.split() == ["a.txt", "b.txt"]
    (ctx / "Containerfile").write_text("FROM busybox\nCOPY *.txt /texts\n")
    result = mr("build", str(ctx))
    assert result.code == 125
    assert "must be a directory and end with a /" in result.err


# -- the layer cache ---------------------------------------------------------------------------
SLOW = """\
FROM busybox
RUN sleep 0.4; date +%s%N > /first
COPY data.txt /data.txt
RUN sleep 0.4; date +%s%N > /second
RUN sleep 0.4; date +%s%N > /third
"""


def _timed(mr, *args: str) -> tuple[Result, float]:
    start = time.monotonic()
    result = ok(mr(*args))
    return result, time.monotonic() - start


def test_cache_hit_runs_no_container(mr, tmp_path, isolated_store):
    ctx = context(tmp_path, SLOW, {"data.txt": "v1\n"})
    ok(mr("history", "busybox"))  # the embedded image is built outside the timing
    first, first_s = _timed(mr, "build", "--progress=plain", "-t", "slow", str(ctx))
    assert first.out.count("Running in") == 3 and "Using cache" not in first.out
    stamps = ok(mr("run", "--rm", "slow", "cat", "/first", "/second", "/third")).out
    image_id = image_config(mr, "slow")["Id"]

    again, again_s = _timed(mr, "build", "--progress=plain", "-t", "slow", str(ctx))
    assert again.out.count(" ---> Using cache") == 4
    assert "Running in" not in again.out
    assert image_config(mr, "slow")["Id"] == image_id
    assert ok(mr("run", "--rm", "slow", "cat", "/first", "/second", "/third")).out == stamps
    assert leftovers(isolated_store) == []


def test_cache_misses_after_a_context_change_and_with_no_cache(mr, tmp_path):
    ctx = context(tmp_path, SLOW, {"data.txt": "v1\n"})
    ok(mr("build", "-t", "slow", str(ctx)))
    first_ids = [h["ID"] for h in history(mr, "slow")]

    os.utime(ctx / "data.txt", (1, 1))  # mtime alone does not count (docker's rule)
    touched = ok(mr("build", "--progress=plain", "-t", "slow", str(ctx)))
    assert touched.out.count("Using cache") == 4

    (ctx / "data.txt").write_text("v2\n")
    changed = ok(mr("build", "--progress=plain", "-t", "slow", str(ctx)))
    steps = changed.out.split("Step ")[1:]
    assert "Using cache" in steps[1]  # the RUN before the COPY
    assert all("Using cache" not in s for s in steps[2:])  # the COPY and everything after it
    assert ok(mr("run", "--rm", "slow", "cat", "/data.txt")).out == "v2\n"
    changed_ids = [h["ID"] for h in history(mr, "slow")]
    assert changed_ids[-2:] == first_ids[-2:] and changed_ids[0] != first_ids[0]

    fresh = ok(mr("build", "--progress=plain", "--no-cache", "-t", "slow", str(ctx)))
    assert "Using cache" not in fresh.out and fresh.out.count("Running in") == 3
    assert [h["ID"] for h in history(mr, "slow")][1:4] != changed_ids[1:4]


def cache_hits(output: str) -> list[bool]:
    """For each step after the first (FROM) of a --progress=plain build: whether the cache answered."""
    return ["Using cache" in step for step in output.split("Step ")[2:]]


def test_a_cached_build_misses_on_whatever_its_steps_read(mr, busybox, tmp_path):
    """Every input a step reads invalidates it and the steps after it: the files a COPY takes (as
    .dockerignore and a wildcard select them), the Dockerfile's text, and the base image behind an
    unchanged name. Nothing else does: the unchanged rebuild is answered by the cache throughout."""
    ctx = context(
        tmp_path,
        "FROM base:1\nCOPY src/ /src/\nCOPY *.txt /txt/\nENV MODE=one\n",
        {"src/app.sh": "echo app\n", "src/secret": "s3cret\n", "a.txt": "a\n"},
    )
    ok(mr("tag", "busybox", "base:1"))
    built = ok(mr("build", "--progress=plain", "-t", "inputs", str(ctx)))
    assert cache_hits(built.out) == [False, False, False]

    def rebuild() -> list[bool]:
        return cache_hits(ok(mr("build", "--progress=plain", "-t", "inputs", str(ctx))).out)

    assert rebuild() == [True, True, True]
    (ctx / ".dockerignore").write_text("src/secret\n")  # the first COPY's directory loses a file
    assert rebuild() == [False, False, False]
    (ctx / "b.txt").write_text("b\n")  # the wildcard now takes one more file
    assert rebuild() == [True, False, False]
    (ctx / "Containerfile").write_text("FROM base:1\nCOPY src/ /src/\nCOPY *.txt /txt/\nENV MODE=two\n")
    assert rebuild() == [True, True, False]
    config = image_config(mr, "inputs")
    assert "MODE=two" in config["Config"]["Env"]
    ok(mr("build", "-q", "-t", "other-base", str(context(tmp_path / "other", "FROM busybox\nLABEL x=y\n"))))
    ok(mr("tag", "other-base", "base:1"))  # the same name, another image
    assert rebuild() == [False, False, False]
    assert rebuild() == [True, True, True]
    assert ok(mr("run", "--rm", "inputs", "sh", "-c", "ls /src /txt")).out == "/src:\napp.sh\n\n/txt:\na.txt\nb.txt\n"


def test_empty_run_makes_no_layer(mr, tmp_path, isolated_store):
    ctx = context(tmp_path, "FROM busybox\nRUN true\nRUN echo x > /x\n")
    ok(mr("build", "-t", "empty", str(ctx)))
    document = stored_config(isolated_store, image_config(mr, "empty")["Id"])
    assert len(document["rootfs"]["diff_ids"]) == 2
    assert document["history"][1] == {
        "created": document["history"][1]["created"],
        "created_by": "/bin/sh -c true",
        "empty_layer": True,
    }
    assert "empty_layer" not in document["history"][2]
    rows = history(mr, "empty")
    assert [r["Size"] for r in rows[:2]] == ["2B", "0B"]


VOLUME_FIRST = """\
FROM busybox
RUN ln -s /real /link && mkdir /kept && echo image > /kept/old
VOLUME /data /srv/a/b /link/x /kept
RUN stat -c '%a %u:%g %F %n' /data /srv/a/b /srv/a /real/x > /modes && echo written > /data/file
RUN cat /data/file /kept/old
"""


def test_a_volume_path_exists_for_later_run_steps_in_their_layer(mr, tmp_path, isolated_store):
    """docker's classic builder: the VOLUME step has no layer; the next RUN's container makes each
    missing path (0755, root's, parents too, through links inside the root) and that step's layer
    keeps it. What a RUN writes there stays, as BuildKit keeps it (the classic builder mounted a
    fresh volume there for each step and lost it)."""
    ctx = context(tmp_path, VOLUME_FIRST)
    built = ok(mr("build", "--progress=plain", "-t", "vol-first", str(ctx)))
    assert "written\nimage\n" in built.out
    document = stored_config(isolated_store, image_config(mr, "vol-first")["Id"])
    entries = document["history"][-3:]
    assert entries[0]["created_by"] == "/bin/sh -c #(nop)  VOLUME [/data /srv/a/b /link/x /kept]"
    assert entries[0]["empty_layer"] and entries[2]["empty_layer"] and "empty_layer" not in entries[1]
    layer = isolated_store / "layers" / document["rootfs"]["diff_ids"][-1].split(":")[-1] / "diff"
    made = sorted(str(p.relative_to(layer)) for p in layer.rglob("*"))
    assert made == ["data", "data/file", "modes", "real", "real/x", "srv", "srv/a", "srv/a/b"]
    for name in ("data", "srv", "srv/a", "srv/a/b", "real/x"):
        st = os.lstat(layer / name)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o755, 0, 0), name
    # run: each VOLUME an anonymous volume filled from the image, the build's writes included
    out = ok(mr("run", "--rm", "--network", "none", "vol-first", "sh", "-c", "cat /modes /data/file"))
    assert out.out == "755 0:0 directory /data\n755 0:0 directory /srv/a/b\n755 0:0 directory /srv/a\n" + (
        "755 0:0 directory /real/x\nwritten\n"
    )
    assert leftovers(isolated_store) == []


def test_run_makes_a_volume_path_the_image_lacks(mr, tmp_path):
    """No RUN after the VOLUME: the image has no such path; a container of it gets it made, 0755
    and root's, as runc makes the mount point of docker's anonymous volume."""
    ok(mr("build", "-q", "-t", "vol-only", str(context(tmp_path, "FROM busybox\nVOLUME /fresh/dir\n"))))
    out = ok(mr("run", "--rm", "--network", "none", "vol-only", "stat", "-c", "%a %U %F", "/fresh", "/fresh/dir"))
    assert out.out == "755 root directory\n755 root directory\n"


# -- ARG ---------------------------------------------------------------------------------------
def test_arg_and_build_arg_substitution(mr, tmp_path):
    ctx = context(
        tmp_path,
        """\
ARG BASE=nosuchbase
FROM $BASE
ARG BASE
ARG V=default
ARG UNSET
ENV FROM_ARG=$V
RUN echo "v=$V base=$BASE unset=[$UNSET]" > /args
LABEL v=${V:-none}
""",
    )
    built = ok(
        mr(
            "build",
            "--build-arg",
            "BASE=busybox",
            "--build-arg",
            "V=given",
            "--build-arg",
            "EXTRA=1",
            "-t",
            "args",
            str(ctx),
        )
    )
    assert built.err == "[Warning] One or more build-args [EXTRA] were not consumed\n"
    assert ok(mr("run", "--rm", "args", "cat", "/args")).out == "v=given base=busybox unset=[]\n"
    config = image_config(mr, "args")["Config"]
    assert "FROM_ARG=given" in config["Env"] and config["Labels"] == {"v": "given"}
    assert not any(e.startswith(("V=", "BASE=")) for e in config["Env"])
    run_row = next(h for h in history(mr, "args") if "echo" in h["CreatedBy"])
    assert run_row["CreatedBy"] == '|2 BASE=busybox V=given /bin/sh -c echo "v=$V base=$BASE unset=[$UNSET]" > /args'

    # another value is another RUN: the cache misses
    other = ok(
        mr("build", "--progress=plain", "--build-arg", "BASE=busybox", "--build-arg", "V=other", "-t", "args", str(ctx))
    )
    run_step = next(s for s in other.out.split("Step ")[1:] if s.split(" : ", 1)[1].startswith("RUN"))
    assert "Running in" in run_step and "Using cache" not in run_step
    assert ok(mr("run", "--rm", "args", "cat", "/args")).out == "v=other base=busybox unset=[]\n"


# -- output ------------------------------------------------------------------------------------
def test_pipe_shows_run_output_and_quiet_hides_it(mr, tmp_path):
    ctx = context(tmp_path, "FROM busybox\nRUN echo from-the-step\n")
    piped = ok(mr("build", "-t", "out", str(ctx)))
    assert piped.out.splitlines()[0] == "from-the-step" and "Step" not in piped.out
    quiet = ok(mr("build", "-q", "--no-cache", "-t", "out", str(ctx)))
    assert "from-the-step" not in quiet.out + quiet.err
    assert quiet.out == image_config(mr, "out")["Id"] + "\n"  # the id alone, as docker's -q
    plain = ok(mr("build", "--progress=plain", "--no-cache", "-t", "out", str(ctx)))
    lines = plain.out.splitlines()
    assert lines[0] == "Step 1/2 : FROM busybox" and lines[2] == "Step 2/2 : RUN echo from-the-step"
    assert lines[3].startswith(" ---> Running in ") and lines[4] == "from-the-step"
    assert lines[5].startswith("Removing intermediate container ") and lines[6].startswith(" ---> ")


# -- failures ----------------------------------------------------------------------------------
def test_failing_run_stops_the_build_and_leaves_nothing(mr, tmp_path, isolated_store):
    ctx = context(tmp_path, "FROM busybox\nRUN echo out; echo err >&2; exit 3\nRUN echo never\n")
    ok(mr("history", "busybox"))
    images_before = sorted(os.listdir(isolated_store / "images"))
    result = mr("build", "-t", "broken:1", str(ctx))
    assert result.code == 3
    assert result.out == "out\n"
    assert result.err == (
        "err\nminirun: error: The command '/bin/sh -c echo out; echo err >&2; exit 3' returned a non-zero code: 3\n"
    )
    assert sorted(os.listdir(isolated_store / "images")) == images_before
    assert "broken" not in ok(mr("images")).out
    assert leftovers(isolated_store) == []

    quiet = mr("build", "-q", "-t", "broken:1", str(ctx))
    assert quiet.code == 3 and quiet.out == ""
    assert quiet.err.splitlines() == [
        "out",
        "err",
        "minirun: error: The command '/bin/sh -c echo out; echo err >&2; exit 3' returned a non-zero code: 3",
    ]


def test_failing_step_keeps_earlier_steps_cached(mr, tmp_path, isolated_store):
    ctx = context(tmp_path, "FROM busybox\nRUN echo ok > /ok\nRUN false\n")
    result = mr("build", "-t", "half", str(ctx))
    assert result.code == 1 and "The command '/bin/sh -c false' returned a non-zero code: 1" in result.err
    (ctx / "Containerfile").write_text("FROM busybox\nRUN echo ok > /ok\nRUN true\n")
    fixed = ok(mr("build", "--progress=plain", "-t", "half", str(ctx)))
    assert fixed.out.count("Using cache") == 1  # as docker: the step before the failure is reused
    assert leftovers(isolated_store) == []


def test_exec_form_run_of_a_missing_command(mr, tmp_path, isolated_store):
    ctx = context(tmp_path, 'FROM busybox\nRUN ["no-such-command"]\n')
    result = mr("build", str(ctx))
    assert result.code == 127
    assert result.err == (
        "minirun: error: The command 'no-such-command' returned a non-zero code: 127: "
        'exec: "no-such-command": executable file not found in $PATH\n'
    )
    assert leftovers(isolated_store) == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("FROM busybox\nFOO bar\n", "Dockerfile parse error line 2: unknown instruction: FOO"),
        ("RUN true\n", "Dockerfile parse error line 1: no build stage in current context"),
        ("# only a comment\n", "the Dockerfile (Containerfile) cannot be empty"),
        (
            "FROM busybox\nCOPY onlyone\n",
            "Dockerfile parse error line 2: COPY requires at least two arguments, "
            "but only one was provided. Destination could not be determined.",
        ),
        (
            "FROM busybox\nRUN --mount=type=cache,target=/x true\n",
            "Dockerfile parse error line 2: RUN --mount is not supported by minirun build",
        ),
        (
            'FROM busybox\nCMD ["a", 1]\n',
            "Dockerfile parse error line 2: when using JSON array syntax, arrays must be comprised of strings only",
        ),
        ("FROM busybox\nENV A=${B\n", "ENV: failed to process \"${B\": missing ':' in substitution"),
        ("FROM no-such-image\n", "No such image: no-such-image:latest"),
    ],
)
def test_bad_containerfile_is_one_line_and_125(mr, tmp_path, isolated_store, text, message):
    ctx = context(tmp_path, text)
    result = mr("build", "-t", "bad", str(ctx))
    assert (result.code, result.err) == (125, f"minirun: error: {message}\n")
    if (isolated_store / "containers").is_dir():
        assert leftovers(isolated_store) == []


def test_dockerfile_name_and_dash_f(mr, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text('FROM busybox\nCMD ["from-dockerfile"]\n')
    ok(mr("build", "-t", "named", str(ctx)))
    assert image_config(mr, "named")["Config"]["Cmd"] == ["from-dockerfile"]
    other = tmp_path / "other.containerfile"
    other.write_text('FROM busybox\nCMD ["from-f"]\n')
    ok(mr("build", "-f", str(other), "-t", "named", str(ctx)))
    assert image_config(mr, "named")["Config"]["Cmd"] == ["from-f"]
    shutil.rmtree(ctx)
    missing = mr("build", str(ctx))
    assert missing.code == 125 and len(missing.err.splitlines()) == 1
