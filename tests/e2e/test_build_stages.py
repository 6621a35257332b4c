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
    """The names in each layer tar of `image`, bottom first, as `save` writes them."""
    archive = tmp_path / f"{image.replace(':', '_')}.tar"
    ok(cli("save", "-o", str(archive), image))
    layers = []
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for path in manifest[0]["Layers"]:
            data = outer.extractfile(path).read()  # type: ignore[union-attr]
            with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                layers.append({m.name.rstrip("/") for m in layer.getmembers()})
    return layers


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
