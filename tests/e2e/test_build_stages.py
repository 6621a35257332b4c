"""`build` beyond one stage, as a user types it, as root: `.dockerignore` keeping files out of
every layer, multi-stage builds, and the build flags (`--target`, `-q`, `-f -`, a context on
stdin). Checks read the image's layer tars (from `save`) and the store's files, not only what a
container sees."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Result, require_root
from tests.registryserver import registry  # noqa: F401 - a fixture


@pytest.fixture(autouse=True)
def _root():
    require_root()


def ok(result: Result) -> Result:
    assert result.code == 0, f"exit {result.code}\nstdout: {result.out}\nstderr: {result.err}"
    return result


def context(tmp_path: Path, containerfile: str, files: dict[str, str]) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Containerfile").write_text(containerfile)
    for name, data in files.items():
        path = ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)
    return ctx


def layer_members(cli, tmp_path: Path, image: str) -> list[set[str]]:
    """The names in each layer tar of `image`, bottom first, as `save` writes them (to
    tmp_path/IMAGE.tar, for saved_layers)."""
    archive = tmp_path / f"{image.replace(':', '_')}.tar"
    ok(cli("save", "-o", str(archive), image))
    layers = []
    for data in saved_layers(archive):
        with tarfile.open(fileobj=io.BytesIO(data)) as layer:
            layers.append({m.name.rstrip("/") for m in layer.getmembers()})
    return layers


def saved_layers(archive: Path) -> list[bytes]:
    """Each layer tar of a `save` archive's first image, bottom first."""
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        return [outer.extractfile(path).read() for path in manifest[0]["Layers"]]  # type: ignore[union-attr]


def member(layer_tar: bytes, name: str) -> tuple[tarfile.TarInfo, bytes]:
    with tarfile.open(fileobj=io.BytesIO(layer_tar)) as layer:
        info = layer.getmember(name)
        return info, layer.extractfile(info).read()  # type: ignore[union-attr]


def files_holding(root: Path, marker: bytes) -> list[str]:
    """Every file below root whose bytes contain marker."""
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                if marker in f.read():
                    found.append(path)
    return found


# -- .dockerignore ---------------------------------------------------------------------------
SECRET = "TOPSECRET-c0ffee-4711"
IGNORE = """\
# secrets never go into an image
secret.txt
/node_modules
**/*.key
docs
!docs/README.md
 # a pattern (the # is not at the line's start), matching nothing
.dockerignore
Containerfile
"""
IGNORING = """\
FROM busybox
COPY . /app/
COPY *.txt /glob/
COPY conf /conf/
COPY docs /docs/
"""
CONTEXT_FILES = {
    "secret.txt": SECRET,
    "keep.txt": "kept\n",
    "conf/app.yml": "port: 80\n",
    "conf/tls/server.key": SECRET,
    "node_modules/pkg/index.js": SECRET,
    "docs/README.md": "read me\n",
    "docs/internal.md": SECRET,
}


def test_dockerignore_keeps_listed_files_out_of_every_layer(cli, tmp_path, isolated_store):
    ctx = context(tmp_path, IGNORING, {**CONTEXT_FILES, ".dockerignore": IGNORE})
    os.symlink("secret.txt", ctx / "link-to-secret")  # a link is copied as a link, never followed
    ok(cli("build", "-t", "ignoring", str(ctx)))

    app, glob, conf, docs = (set(), set(), set(), set())
    for layer in layer_members(cli, tmp_path, "ignoring")[1:]:  # above busybox
        app |= {n[4:] for n in layer if n.startswith("app/")}
        glob |= {n[5:] for n in layer if n.startswith("glob/")}
        conf |= {n[5:] for n in layer if n.startswith("conf/")}
        docs |= {n[5:] for n in layer if n.startswith("docs/")}
    assert app == {"keep.txt", "conf", "conf/app.yml", "conf/tls", "docs", "docs/README.md", "link-to-secret"}
    assert glob == {"keep.txt"}
    assert conf == {"app.yml", "tls"}
    assert docs == {"README.md"}
    # nowhere in the store: no layer, no step's image, no staged or cached copy holds the bytes
    assert files_holding(isolated_store, SECRET.encode()) == []

    # named directly (or through a link), an excluded file is not in the context: docker's error
    for source in ("secret.txt", "link-to-secret", "node_modules/pkg/index.js", "conf/tls/server.key"):
        (ctx / "Containerfile").write_text(f"FROM busybox\nCOPY {source} /x\n")
        result = cli("build", str(ctx))
        assert (result.code, result.err) == (
            125,
            "minirun: error: COPY failed: file not found in build context or excluded by .dockerignore: "
            f"stat {source}: file does not exist\n",
        )
    (ctx / "Containerfile").write_text("FROM busybox\nCOPY secret.* /x/\n")
    result = cli("build", str(ctx))
    assert (result.code, result.err) == (125, "minirun: error: COPY failed: no source files were specified\n")
    assert files_holding(isolated_store, SECRET.encode()) == []

    # a pattern Go's filepath.Match refuses fails the build before any step
    (ctx / ".dockerignore").write_text("ok.txt\n[a-\n")
    result = cli("build", str(ctx))
    assert (result.code, result.err) == (
        125,
        f"minirun: error: {ctx}/.dockerignore: syntax error in pattern: [a-\n",
    )


# -- multi-stage -----------------------------------------------------------------------------
STAGES = """\
ARG BASE=busybox
FROM ${BASE} AS builder
RUN mkdir /out && echo built > /out/app && echo junk > /builder-only && chown 1000:1000 /out/app \\
 && ln -s / /hostroot && mkdir -p PROBE && echo image > PROBE/a.txt && echo image > PROBE/b.txt
FROM busybox AS unused
RUN echo never > /never
FROM busybox
COPY --from=builder /out/app /app
COPY --from=0 /out /out2/
COPY --from=busybox /bin/busybox /copied-busybox
COPY --from=builder /hostroot/PROBE/*.txt /probe/
HEALTHCHECK --interval=5s --timeout=2s --start-period=1s --retries=3 CMD wget -q localhost || exit 1
STOPSIGNAL SIGQUIT
SHELL ["/bin/sh", "-ec"]
CMD cat /app
"""


def inspect(cli, name: str, *more: str):
    """The image's inspect document; with more names, a list of them (one CLI process)."""
    documents = json.loads(ok(cli("inspect", "--type", "image", name, *more)).out)
    return documents if more else documents[0]


def test_multi_stage_final_image_holds_only_what_it_copied(cli, tmp_path, isolated_store):
    # a stage's link to / must not make a wildcard list the host: the host's PROBE holds a.txt only
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "a.txt").write_text("host\n")
    ctx = context(tmp_path, STAGES.replace("PROBE", str(probe)), {})
    built = ok(cli("build", "--progress=plain", "-t", "final", str(ctx)))
    # BuildKit's rule: the stage `unused` is not needed by the last stage, so it never runs
    assert "echo never" not in built.out
    steps = [line for line in built.out.splitlines() if line.startswith("Step ")]
    assert len(steps) == 12 and steps[-1] == "Step 12/12 : CMD cat /app"

    final, busybox = inspect(cli, "final", "busybox")
    assert final["RootFS"]["Layers"][0] == busybox["RootFS"]["Layers"][0]
    layers = layer_members(cli, tmp_path, "final")
    above = set().union(*layers[1:])
    # nothing else of the builder; both files of the image's PROBE (none of the host's)
    assert above == {"app", "out2", "out2/app", "copied-busybox", "probe", "probe/a.txt", "probe/b.txt"}
    tars = saved_layers(tmp_path / "final.tar")
    app, data = member(tars[1], "app")
    assert (app.uid, app.gid, data) == (1000, 1000, b"built\n")  # COPY --from keeps the owner it had there
    assert member(tars[4], "probe/a.txt")[1] == b"image\n"

    config = final["Config"]
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q localhost || exit 1"],
        "Interval": 5_000_000_000,
        "Timeout": 2_000_000_000,
        "StartPeriod": 1_000_000_000,
        "Retries": 3,
    }
    assert config["StopSignal"] == "SIGQUIT"
    assert config["Cmd"] == ["/bin/sh", "-ec", "cat /app"]  # SHELL applies to what follows
    history = ok(cli("history", "--no-trunc", "--format", "{{.CreatedBy}}", "final")).out.splitlines()
    assert (
        '/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "wget -q localhost || exit 1"] "5s" "2s" "1s" "0s" '
        "'\\x03'}" in history
    )

    # --target builds that stage (and what it needs): -q prints the id alone; all else is cached
    quiet = ok(cli("build", "-q", "--target", "unused", "-t", "unused", str(ctx)))
    assert quiet.out == inspect(cli, "unused")["Id"] + "\n" and quiet.err == ""
    assert any("echo never" in line for line in ok(cli("history", "--no-trunc", "unused")).out.splitlines())
    again = ok(cli("build", "--progress=plain", "-t", "final", str(ctx)))
    assert again.out.count("Using cache") == 9 and inspect(cli, "final")["Id"] == final["Id"]

    for text, message in [
        ("FROM busybox\nCOPY --from=later /x /x\nFROM busybox AS later\n", "refers to current or future build stage"),
        ("FROM busybox AS a\nFROM busybox AS A\n", 'duplicate stage name "a"'),
        ("FROM busybox\nCOPY --from=0 /x /x\n", "invalid from flag value 0"),
    ]:
        (ctx / "Containerfile").write_text(text)
        result = cli("build", str(ctx))
        assert result.code == 125 and message in result.err and len(result.err.splitlines()) == 1
    (ctx / "Containerfile").write_text(STAGES)
    missing = cli("build", "--target", "nope", str(ctx))
    assert (missing.code, missing.err) == (125, 'minirun: error: target stage "nope" could not be found\n')
    (ctx / "Containerfile").write_text("FROM busybox AS b\nFROM busybox\nCOPY --from=b /no/such /x\n")
    result = cli("build", str(ctx))
    assert (result.code, result.err) == (
        125,
        "minirun: error: COPY failed: file not found in stage b: stat /no/such: file does not exist\n",
    )
    assert [p.name for p in (isolated_store / "containers").iterdir()] == []


# -- stdin -----------------------------------------------------------------------------------
def _tar_gz(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return out.getvalue()


def test_dockerfile_and_context_from_stdin(cli, tmp_path, isolated_store):
    ctx = context(tmp_path, "FROM busybox\n", {"a.txt": "from the dir\n", ".dockerignore": "secret.txt\n"})
    (ctx / "secret.txt").write_text(SECRET)
    # -f -: the Dockerfile from stdin, the context from the directory (its .dockerignore too)
    piped = b'FROM busybox\nCOPY . /ctx/\nLABEL from="stdin"\n'
    ok(cli("build", "-f", "-", "-t", "dash-f", str(ctx), input=piped))
    assert inspect(cli, "dash-f")["Config"]["Labels"] == {"from": "stdin"}
    assert set().union(*layer_members(cli, tmp_path, "dash-f")[1:]) >= {"ctx/a.txt", "ctx/Containerfile"}
    assert "ctx/secret.txt" not in set().union(*layer_members(cli, tmp_path, "dash-f")[1:])

    # build -: a gzip tar is the context; -f names a file inside it; its .dockerignore applies
    archive = _tar_gz(
        {
            "sub/app.Dockerfile": "FROM busybox\nCOPY . /ctx/\n",
            "b.txt": "from the tar\n",
            "secret.txt": SECRET,
            ".dockerignore": "secret.txt\n",
        }
    )
    ok(cli("build", "-f", "sub/app.Dockerfile", "-t", "tar-ctx", "-", input=archive))
    above = set().union(*layer_members(cli, tmp_path, "tar-ctx")[1:])
    assert {"ctx/b.txt", "ctx/sub/app.Dockerfile"} <= above and "ctx/secret.txt" not in above

    # build -: anything else on stdin is a Dockerfile, with an empty context
    ok(cli("build", "-t", "no-ctx", "-", input=b"FROM busybox\nENV ONLY=dockerfile\n"))
    assert "ONLY=dockerfile" in inspect(cli, "no-ctx")["Config"]["Env"]
    lonely = cli("build", "-", input=b"FROM busybox\nCOPY a.txt /\n")
    assert lonely.code == 125 and "file not found in build context" in lonely.err

    assert [p.name for p in (isolated_store / "layers").iterdir() if p.name.startswith(".tmp-")] == []
    both = cli("build", "-f", "-", "-", input=b"FROM busybox\n")
    assert (both.code, both.err) == (
        125,
        "minirun: error: invalid argument: can't use stdin for both build context and dockerfile\n",
    )


# -- base images from a registry ---------------------------------------------------------------
def test_a_missing_base_is_pulled_and_pull_fetches_it_again(cli, tmp_path, registry):  # noqa: F811
    base = f"{registry.host}/base:1"
    ok(cli("tag", "busybox", base))
    ok(cli("push", "-q", base))
    ok(cli("rmi", base))
    ctx = context(tmp_path, f"FROM {base}\nLABEL app=1\n", {"new.txt": "newer base\n"})
    ok(cli("build", "-q", "-t", "app", str(ctx)))  # the store lacks it: pulled, as docker does
    old, app = inspect(cli, base, "app")
    assert old["RepoDigests"] and app["RootFS"] == old["RootFS"]

    # a newer base:1 in the registry; the store keeps the old one
    (tmp_path / "newer").mkdir()
    (tmp_path / "newer" / "Containerfile").write_text("FROM busybox\nCOPY new.txt /\n")
    (tmp_path / "newer" / "new.txt").write_text("newer base\n")
    ok(cli("build", "-q", "-t", base, str(tmp_path / "newer")))
    ok(cli("push", "-q", base))
    newer = inspect(cli, base)["RootFS"]
    ok(cli("tag", old["Id"], base))

    ok(cli("build", "-q", "-t", "app", str(ctx)))
    assert inspect(cli, "app")["RootFS"] == old["RootFS"]  # without --pull: the store's
    ok(cli("build", "-q", "--pull", "-t", "app", str(ctx)))
    assert [d["RootFS"] for d in inspect(cli, "app", base)] == [newer, newer]  # --pull: the registry's
