"""Image configs from outside (`load`, `pull`) whose fields have JSON types docker's typed decoding
refuses: each is one clear error and stores nothing. Taken as they were, one such image made
`history`, `inspect`, `run` and `images REPO` (for every repository) fail with internal errors, and
a history that is not a list made the image unreadable and unremovable (`rmi`: damaged record)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from tests.registryserver import minirun_config, registry  # noqa: F401


@pytest.fixture(autouse=True)
def _isolated_credentials(minirun_config):  # noqa: F811  (no test reads or writes ~/.minirun)
    return minirun_config


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    return out.getvalue()


def _config(layer: bytes, **fields) -> bytes:
    document = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [_sha(layer)]}}
    return json.dumps({**document, **fields}).encode()


def _archive(config: bytes, layer: bytes, tag: str | None) -> bytes:
    """docker save's combined layout, one image (`tag` None: untagged)."""
    layer_path, config_path = f"blobs/sha256/{_sha(layer)[7:]}", f"blobs/sha256/{_sha(config)[7:]}"
    tags = [tag] if tag else []
    manifest = json.dumps([{"Config": config_path, "RepoTags": tags, "Layers": [layer_path]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in ((layer_path, layer), (config_path, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


BAD = {
    "history not a list": ({"history": "x"}, "history is not a list"),
    "history null": ({"history": None}, "history is not a list"),
    "history entry not an object": ({"history": ["x"]}, "history entry 1 is not an object"),
    "history created_by null": ({"history": [{"created_by": None}]}, "history entry 1 created_by is not a string"),
    "created a number": ({"created": 12345}, "created is not a string"),
    "config a list": ({"config": [1, 2]}, "config is not an object"),
    "config null": ({"config": None}, "config is not an object"),
    "Env with a number": ({"config": {"Env": [1, None]}}, "config.Env is not a list of strings"),
    "Cmd a string": ({"config": {"Cmd": "true"}}, "config.Cmd is not a list of strings"),
    "Entrypoint a number": ({"config": {"Entrypoint": 5}}, "config.Entrypoint is not a list of strings"),
    "User a number": ({"config": {"User": 0}}, "config.User is not a string"),
    "Labels a list": ({"config": {"Labels": ["a"]}}, "config.Labels is not a map of strings"),
    "ExposedPorts a list": ({"config": {"ExposedPorts": ["80"]}}, "config.ExposedPorts is not a map of objects"),
    "Healthcheck Test a string": (
        {"config": {"Healthcheck": {"Test": "x"}}},
        "config.Healthcheck.Test is not a list of strings",
    ),
    "Retries a boolean": ({"config": {"Healthcheck": {"Retries": True}}}, "config.Healthcheck.Retries is not an int"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_load_refuses_a_config_docker_cannot_decode(cli, busybox, tmp_path, case):
    fields, message = BAD[case]
    layer = _layer()
    archive = tmp_path / "image.tar"
    archive.write_bytes(_archive(_config(layer, **fields), layer, "hostile:1"))
    loaded = cli("load", "-i", str(archive))
    assert loaded.code == 125 and message in loaded.err, loaded
    assert len(loaded.err.strip().splitlines()) == 1, loaded.err
    listed = cli("images", "hostile")
    assert listed.code == 0 and listed.err == "" and "hostile" not in listed.out, listed


def test_dockers_nulls_in_the_container_config_load_and_run(cli, busybox, tmp_path):
    """docker writes an empty list or map of container.Config as null (old images are full of
    `"Entrypoint": null, "OnBuild": null`): those pass, and every command takes them."""
    layer = _layer()
    names = ("Env", "Entrypoint", "OnBuild", "Labels", "Volumes", "ExposedPorts", "Healthcheck", "User", "Shell")
    container = {**dict.fromkeys(names), "Cmd": ["/hello"]}
    archive = tmp_path / "image.tar"
    archive.write_bytes(_archive(_config(layer, config=container, history=[{"created_by": "x"}]), layer, "nulls:1"))
    assert cli("load", "-i", str(archive)).code == 0
    for verb in (("history",), ("inspect",), ("images",), ("rmi",)):
        done = cli(*verb, "nulls:1")
        assert done.code == 0 and done.err == "", (verb, done)


def test_pull_refuses_a_config_docker_cannot_decode(cli, busybox, registry):  # noqa: F811
    from minirun.distribution.registry import Registry
    from minirun.image.manifests import DOCKER_CONFIG, OCI_LAYER, OCI_MANIFEST

    layer = _layer()
    config = _config(layer, history="x")
    client = Registry(registry.host)
    try:
        for blob in (layer, config):
            client.upload_blob("hostile", _sha(blob), len(blob), lambda blob=blob: io.BytesIO(blob))
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": _sha(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": _sha(layer), "size": len(layer)}],
        }
        client.put_manifest("hostile", "1", json.dumps(manifest).encode(), OCI_MANIFEST)
    finally:
        client.close()
    pulled = cli("pull", f"{registry.host}/hostile:1")
    assert pulled.code == 125 and "history is not a list" in pulled.err, pulled
    listed = cli("images")
    assert listed.code == 0 and listed.err == "" and "hostile" not in listed.out, listed


def test_a_history_longer_than_any_build_makes_is_refused(cli, busybox, tmp_path):
    from minirun.image.manifests import MAX_HISTORY

    layer = _layer()
    archive = tmp_path / "image.tar"
    archive.write_bytes(_archive(_config(layer, history=[{}] * (MAX_HISTORY + 1)), layer, "long:1"))
    loaded = cli("load", "-i", str(archive))
    assert loaded.code == 125 and f"more than the {MAX_HISTORY} taken" in loaded.err, loaded


@pytest.mark.timeout(60)  # each prefix's key made of its whole text: this ran for many minutes
def test_the_longest_history_taken_still_relates_images_at_once(cli, busybox, tmp_path):
    """A parent (the first MAX_HISTORY - 1 entries, untagged, as a build's step image) and its
    child: `images` hides the parent, `history` names it, `rmi` of the child deletes both."""
    from minirun.image.manifests import MAX_HISTORY

    layer = _layer()
    step = "RUN " + "x" * 100  # a Dockerfile line
    history = [{"created_by": f"{step} {i}", **({"empty_layer": True} if i else {})} for i in range(MAX_HISTORY)]
    parent, child = _config(layer, history=history[:-1]), _config(layer, history=history)
    for config, tag in ((parent, None), (child, "long:1")):
        archive = tmp_path / "image.tar"
        archive.write_bytes(_archive(config, layer, tag))
        assert cli("load", "-i", str(archive)).code == 0
    listed = cli("images", "-q", "--no-trunc")
    assert listed.code == 0 and _sha(parent) not in listed.out and _sha(child) in listed.out, listed
    shown = cli("history", "-q", "--no-trunc", "long:1")
    assert shown.out.split()[:2] == [_sha(child), _sha(parent)], shown.out[:300]
    removed = cli("rmi", "long:1")
    deleted = [f"Deleted: {_sha(child)}", f"Deleted: {_sha(parent)}"]  # then its layer
    assert removed.code == 0 and removed.out.splitlines()[1:3] == deleted, removed
