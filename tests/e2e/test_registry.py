"""pull, push, login and logout against a real registry (docker-registry on 127.0.0.1), with skopeo
as the other client."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from tests.helpers import d, f, make_image, make_tar
from tests.peers import own_blob_cache
from tests.registryserver import (  # noqa: F401
    PASSWORD,
    USER,
    auth_registry,
    minirun_config,
    plain_registry_on_127_0_0_2,
    redirect_registry,
    registry,
    tls_registry,
    token_registry,
)

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@pytest.fixture(autouse=True)
def _isolated_credentials(minirun_config):  # noqa: F811  (no test reads or writes ~/.minirun)
    return minirun_config


@pytest.fixture
def store2(tmp_path):
    """A second store, as on another machine."""
    return str(tmp_path / "store2")


def one_error_line(result) -> str:
    lines = result.err.strip().splitlines()
    assert result.code == 125, result
    assert len(lines) == 1 and lines[0].startswith("minirun: error: "), result.err
    return lines[0]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


def app_image(store, busybox, name: str, text: str = "hello from the registry\n"):
    return make_image(
        store,
        name,
        [make_tar([d("app"), f("app/hello", text), f("app/big", os.urandom(200_000))])],
        config={"Cmd": ["cat", "/app/hello"]},
        base=busybox,
    )


def store_state(root: str) -> tuple[list[str], list[str]]:
    """(committed layers, image configs) of a store on disk."""
    layers = (
        sorted(n for n in os.listdir(os.path.join(root, "layers")) if not n.startswith("."))
        if os.path.isdir(os.path.join(root, "layers"))
        else []
    )
    images = (
        sorted(n for n in os.listdir(os.path.join(root, "images")) if n.endswith(".json"))
        if os.path.isdir(os.path.join(root, "images"))
        else []
    )
    return layers, images


def staging_dirs(root: str) -> list[str]:
    layers = os.path.join(root, "layers")
    return [n for n in os.listdir(layers) if n.startswith(".tmp-")] if os.path.isdir(layers) else []


# -- push and pull ------------------------------------------------------------------------------


def test_push_then_pull_into_a_second_store(cli, store, busybox, registry, store2):  # noqa: F811
    ref = f"{registry.host}/team/app:1"
    image = app_image(store, busybox, ref)
    pushed = cli("push", ref)
    assert pushed.code == 0, pushed.err
    lines = pushed.out.splitlines()
    assert lines[0] == f"The push refers to repository [{registry.host}/team/app]"
    assert {line for line in lines if line.endswith(": Pushed")} == {f"{short(x)}: Pushed" for x in image.diff_ids}
    match = re.fullmatch(r"1: digest: (sha256:[0-9a-f]{64}) size: (\d+)", lines[-1])
    assert match, pushed.out
    manifest_digest = match.group(1)
    again = cli("push", ref)
    assert f"{short(image.diff_ids[0])}: Layer already exists" in again.out.splitlines()
    assert again.out.splitlines()[-1] == lines[-1]  # same image, same manifest bytes

    pulled = cli("pull", ref, root=store2)
    assert pulled.code == 0, pulled.err
    out = pulled.out.splitlines()
    assert out[0] == "1: Pulling from team/app"
    assert f"Digest: {manifest_digest}" in out
    assert out[-2:] == [f"Status: Downloaded newer image for {ref}", ref]
    assert sum(line.endswith(": Pull complete") for line in out) == 2
    inspected = json.loads(cli("inspect", ref, root=store2).out)[0]
    assert inspected["Id"] == image.id  # sha256 of the config bytes
    repository = f"{registry.host}/team/app"
    assert inspected["RepoDigests"] == [f"{repository}@{manifest_digest}"]  # docker's, on pull
    assert json.loads(cli("inspect", ref).out)[0]["RepoDigests"] == [f"{repository}@{manifest_digest}"]  # and on push
    listed = cli("images", "--digests", root=store2).out.splitlines()
    assert listed[0].split()[:3] == ["REPOSITORY", "TAG", "DIGEST"]
    assert listed[1].split()[:3] == [repository, "1", manifest_digest]
    assert cli("run", "--rm", ref, root=store2).out == "hello from the registry\n"

    up_to_date = cli("pull", ref, root=store2).out.splitlines()
    assert sum(line.endswith(": Already exists") for line in up_to_date) == 2
    assert up_to_date[-2:] == [f"Status: Image is up to date for {ref}", ref]
    assert cli("pull", "-q", ref, root=store2).out == ref + "\n"
    by_digest = cli("pull", f"{registry.host}/team/app@{manifest_digest}", root=store2)
    assert by_digest.code == 0 and by_digest.out.splitlines()[0] == f"{manifest_digest}: Pulling from team/app"


def test_push_mounts_a_blob_from_a_sibling_repository(cli, store, busybox, registry, store2):  # noqa: F811
    first, second = f"{registry.host}/one:1", f"{registry.host}/two:1"
    image = app_image(store, busybox, first)
    cli("tag", first, second)
    assert cli("push", first).code == 0
    pushed = cli("push", second)
    assert pushed.code == 0, pushed.err
    mounted = {line for line in pushed.out.splitlines() if line.endswith("Mounted from one")}
    assert mounted == {f"{short(x)}: Mounted from one" for x in image.diff_ids}
    assert cli("pull", second, root=store2).code == 0
    assert cli("run", "--rm", second, root=store2).out == "hello from the registry\n"


def test_second_pull_fetches_only_the_new_layers(cli, store, busybox, registry, store2):  # noqa: F811
    base = app_image(store, busybox, f"{registry.host}/base:1")
    derived = make_image(store, f"{registry.host}/derived:1", [make_tar([f("app/extra", "extra\n")])], base=base)
    for ref in ("base:1", "derived:1"):
        assert cli("push", f"{registry.host}/{ref}").code == 0
    assert cli("pull", f"{registry.host}/base:1", root=store2).code == 0
    # Break the shared blobs in the registry: a pull that downloaded them would now fail.
    for diff_id in base.diff_ids:
        registry.blob_data(diff_id).write_bytes(b"not the layer")
    pulled = cli("pull", f"{registry.host}/derived:1", root=store2)
    assert pulled.code == 0, pulled.err
    lines = pulled.out.splitlines()
    assert [line for line in lines if line.endswith("Already exists")] == [
        f"{short(x)}: Already exists" for x in base.diff_ids
    ]
    assert [line for line in lines if line.endswith("Pull complete")] == [
        f"{short(derived.diff_ids[-1])}: Pull complete"
    ]
    assert (
        cli("run", "--rm", f"{registry.host}/derived:1", "cat", "/app/extra", "/app/hello", root=store2).out
        == "extra\nhello from the registry\n"
    )


def test_blobs_served_through_a_redirect(cli, store, busybox, redirect_registry, store2):  # noqa: F811
    ref = f"{redirect_registry.host}/cdn:1"
    image = app_image(store, busybox, ref)
    assert cli("push", ref).code == 0
    assert "Layer already exists" in cli("push", ref).out  # HEAD answered by the file server
    pulled = cli("pull", ref, root=store2)
    assert pulled.code == 0, pulled.err
    assert cli("run", "--rm", ref, root=store2).out == "hello from the registry\n"
    connection = http.client.HTTPConnection(redirect_registry.host, timeout=10)
    connection.request("GET", f"/v2/cdn/blobs/{image.diff_ids[-1]}")
    assert connection.getresponse().status == 307  # the registry itself never sent the blob
    connection.close()


@pytest.mark.parametrize("same_size", [True, False])
def test_corrupted_blob_fails_with_a_digest_error_and_stores_nothing(cli, store, busybox, registry, store2, same_size):  # noqa: F811
    ref = f"{registry.host}/corrupt:1"
    image = app_image(store, busybox, ref)
    assert cli("push", ref).code == 0
    blob = registry.blob_data(image.diff_ids[-1])
    data = bytearray(blob.read_bytes())
    if same_size:
        data[len(data) // 2] ^= 0xFF  # one byte of one file's content: still a valid tar
    else:
        data = data[: len(data) // 2]
    blob.write_bytes(bytes(data))
    failed = cli("pull", ref, root=store2)
    line = one_error_line(failed)
    assert f"verification failed for digest {image.diff_ids[-1]}" in line
    assert cli("images", "-q", root=store2).out == ""
    layers, images = store_state(store2)
    assert images == [] and layers == []  # the intact layer was staged, then discarded with the rest
    assert staging_dirs(store2) == []


def test_interrupted_pull_leaves_nothing_trusted_and_the_next_pull_completes(cli, store, busybox, registry, store2):  # noqa: F811
    ref = f"{registry.host}/many:1"
    files = [f(f"many/{i:04d}", f"file {i}\n") for i in range(1500)]  # small files: a slow unpack
    make_image(store, ref, [make_tar([d("many")] + files)], base=busybox)
    assert cli("push", ref).code == 0
    env = dict(os.environ, MINIRUN_ROOT=store2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "minirun", "pull", ref], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    layers_dir = os.path.join(store2, "layers")
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:  # kill it once a layer is being unpacked
            staging = [n for n in os.listdir(layers_dir) if n.startswith(".tmp-")] if os.path.isdir(layers_dir) else []
            if any(
                len(os.listdir(os.path.join(layers_dir, n, "diff")))
                for n in staging
                if os.path.isdir(os.path.join(layers_dir, n, "diff"))
            ):
                break
            time.sleep(0.002)
        else:
            pytest.fail("the pull never started unpacking")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    layers, images = store_state(store2)
    assert images == [] and layers == [] and staging_dirs(store2)  # only temp dirs
    assert cli("images", "-q", root=store2).out == ""
    completed = cli("pull", ref, root=store2)
    assert completed.code == 0, completed.err
    assert staging_dirs(store2) == []  # the killed pull's, swept
    assert cli("run", "--rm", ref, "cat", "/many/1499", root=store2).out == "file 1499\n"


def test_https_by_default_verified_with_the_system_cas(cli, store, busybox, tls_registry, store2, monkeypatch):  # noqa: F811
    ref = f"{tls_registry.host}/secure:1"
    cli("tag", "busybox", ref)
    untrusted = one_error_line(cli("push", ref))
    assert f'"https://{tls_registry.host}/v2/": tls: certificate verify failed' in untrusted
    assert "Client sent an HTTP request to an HTTPS server" in one_error_line(cli("pull", "--insecure", ref))
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.certificate))  # as if the CA were installed
    assert cli("push", ref).code == 0
    assert cli("pull", ref, root=store2).code == 0
    assert cli("run", "--rm", ref, "echo", "over tls", root=store2).out == "over tls\n"


def test_plain_http_only_with_insecure_beyond_loopback_names(cli, store, busybox, plain_registry_on_127_0_0_2):  # noqa: F811
    ref = f"{plain_registry_on_127_0_0_2.host}/plain:1"
    cli("tag", "busybox", ref)
    assert "server gave HTTP response to HTTPS client" in one_error_line(cli("push", ref))
    assert cli("push", "--insecure", ref).code == 0


# -- images pushed by skopeo --------------------------------------------------------------------


def _write_blob(layout, data: bytes) -> dict:
    digest = sha256(data)
    (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def _oci_image(layout, layer_tars: list[bytes], architecture: str) -> tuple[dict, bytes]:
    """An image's blobs in an OCI layout, layers gzip-compressed; its manifest descriptor and config."""
    layers = [
        dict(mediaType="application/vnd.oci.image.layer.v1.tar+gzip", **_write_blob(layout, gzip.compress(tar, 1)))
        for tar in layer_tars
    ]
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "config": {"Cmd": ["cat", "/skopeo/said"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256(tar) for tar in layer_tars]},
            "history": [{"created_by": f"layer {i}"} for i in range(len(layer_tars))],
        },
        indent=1,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **_write_blob(layout, config)),
            "layers": layers,
        }
    ).encode()
    return dict(
        mediaType="application/vnd.oci.image.manifest.v1+json",
        **_write_blob(layout, manifest),
        platform={"os": "linux", "architecture": architecture},
    ), config


def _new_layout(tmp_path, name: str):
    layout = tmp_path / name
    (layout / "blobs" / "sha256").mkdir(parents=True)
    return layout


def _skopeo(*args: str) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    # a blob-info cache of its own, never the host's /var/lib/containers/cache (tests/peers.py)
    proc = subprocess.run(own_blob_cache(["skopeo", *args]), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_pull_of_an_image_pushed_by_skopeo_as_docker_schema2(cli, store, busybox, registry, tmp_path):  # noqa: F811
    from minirun.image.embedded import host_architecture

    layout = _new_layout(tmp_path, "oci")
    with store.layers.open_tar(busybox.diff_ids[0]) as tar:
        base_tar = tar.read()
    top, config = _oci_image(
        layout, [base_tar, make_tar([d("skopeo"), f("skopeo/said", "pushed by skopeo\n")])], host_architecture()
    )
    _layout_index(layout, top)
    ref = f"{registry.host}/skopeo/img:v2s2"
    _skopeo("copy", "-q", "--dest-tls-verify=false", "--format", "v2s2", f"oci:{layout}:v1", f"docker://{ref}")
    pulled = cli("pull", ref, root=str(tmp_path / "fresh"))
    assert pulled.code == 0, pulled.err
    assert json.loads(cli("inspect", ref, root=str(tmp_path / "fresh")).out)[0]["Id"] == sha256(config)
    assert cli("run", "--rm", ref, root=str(tmp_path / "fresh")).out == "pushed by skopeo\n"


def test_pull_of_a_minirun_save_archive_pushed_by_skopeo(cli, store, busybox, registry, tmp_path):  # noqa: F811
    image = app_image(store, busybox, "saved:1", text="saved, copied, pulled\n")
    archive = tmp_path / "saved.tar"
    assert cli("save", "-o", str(archive), "saved:1").code == 0
    ref = f"{registry.host}/skopeo/saved:1"
    # skopeo gzips the layers on the way to a registry: other blob digests, the same diff_ids
    _skopeo("copy", "-q", "--dest-tls-verify=false", f"docker-archive:{archive}", f"docker://{ref}")
    root = str(tmp_path / "fresh")
    pulled = cli("pull", ref, root=root)
    assert pulled.code == 0, pulled.err
    complete = {line.split(":")[0] for line in pulled.out.splitlines() if line.endswith(": Pull complete")}
    assert len(complete) == 2 and not complete & {short(x) for x in image.diff_ids}  # compressed blobs
    assert json.loads(cli("inspect", ref, root=root).out)[0]["Id"] == image.id
    assert cli("run", "--rm", ref, root=root).out == "saved, copied, pulled\n"


def test_pull_of_a_multi_platform_index_takes_the_hosts_image(cli, store, busybox, registry, tmp_path):  # noqa: F811
    from minirun.image.embedded import host_architecture

    layout = _new_layout(tmp_path, "multi")
    with store.layers.open_tar(busybox.diff_ids[0]) as tar:
        base_tar = tar.read()
    other = "arm64" if host_architecture() != "arm64" else "amd64"
    foreign, _ = _oci_image(layout, [make_tar([d("skopeo"), f("skopeo/said", f"the {other} image\n")])], other)
    native, config = _oci_image(
        layout, [base_tar, make_tar([d("skopeo"), f("skopeo/said", "the host's image\n")])], host_architecture()
    )
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [foreign, native]}
    ).encode()
    _layout_index(layout, dict(mediaType="application/vnd.oci.image.index.v1+json", **_write_blob(layout, index)))
    ref = f"{registry.host}/skopeo/multi:v1"
    _skopeo("copy", "-q", "--all", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{ref}")
    root = str(tmp_path / "fresh")
    pulled = cli("pull", ref, root=root)
    assert pulled.code == 0, pulled.err
    assert f"Digest: {sha256(index)}" in pulled.out.splitlines()  # docker reports the index's digest
    assert json.loads(cli("inspect", ref, root=root).out)[0]["Id"] == sha256(config)
    assert cli("run", "--rm", ref, root=root).out == "the host's image\n"


def _layout_index(layout, top: dict) -> None:
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    top = dict(top, annotations={"org.opencontainers.image.ref.name": "v1"})
    top.pop("platform", None)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))


# -- crafted images: what a broken or hostile registry may serve --------------------------------


def _put_image(
    reg,
    repo: str,
    tag: str,
    layer_blobs: list[tuple[bytes, str]],
    diff_ids: list[str],
    architecture: str | None = None,
    config: bytes | None = None,
) -> tuple[dict, bytes]:
    """Upload blobs and a manifest with our client (the server is the real registry)."""
    from minirun.image.embedded import host_architecture

    def put(data: bytes) -> dict:
        reg.upload_blob(repo, sha256(data), len(data), lambda: io.BytesIO(data))
        return {"digest": sha256(data), "size": len(data)}

    config = (
        config
        or json.dumps(
            {
                "architecture": architecture or host_architecture(),
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        ).encode()
    )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **put(config)),
            "layers": [dict(mediaType=media_type, **put(blob)) for blob, media_type in layer_blobs],
        }
    ).encode()
    reg.put_manifest(repo, tag, manifest, "application/vnd.oci.image.manifest.v1+json")
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha256(manifest),
        "size": len(manifest),
        "platform": {"os": "linux", "architecture": architecture or "amd64"},
    }, config


GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@pytest.mark.parametrize(
    "case, message",
    [
        ("diff_id", "the image config says sha256:"),
        ("count", "the manifest lists 1 layers, the image config 2"),
        ("media type", "unsupported layer media type 'application/vnd.oci.image.layer.v1.tar+lz4'"),
        ("foreign", "refusing foreign (non-distributable) layer"),
        ("platform", "no image for linux/"),
        ("config", "image config verification failed for digest sha256:"),
        ("manifest", "manifest verification failed for digest sha256:"),
        ("nested", "image config: invalid JSON (nested too deeply)"),
    ],
)
def test_crafted_images_fail_cleanly_and_store_nothing(cli, registry, store2, case, message):  # noqa: F811
    from minirun.distribution.registry import Registry

    reg = Registry(registry.host)
    tar = make_tar([f("crafted", "x\n")])
    blob = gzip.compress(tar)
    if case == "diff_id":
        _put_image(reg, "crafted", "1", [(blob, GZIP_LAYER)], [sha256(tar + b"\0" * 512)])
    elif case == "count":
        _put_image(reg, "crafted", "1", [(blob, GZIP_LAYER)], [sha256(tar), sha256(tar)])
    elif case == "media type":
        _put_image(reg, "crafted", "1", [(blob, "application/vnd.oci.image.layer.v1.tar+lz4")], [sha256(tar)])
    elif case == "foreign":
        _put_image(
            reg, "crafted", "1", [(blob, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")], [sha256(tar)]
        )
    elif case == "nested":  # a config nested deeper than json's recursion goes
        _put_image(reg, "crafted", "1", [(blob, GZIP_LAYER)], [sha256(tar)], config=b"[" * 100_000)
    elif case == "platform":
        entry, _ = _put_image(reg, "crafted", "s390x", [(blob, GZIP_LAYER)], [sha256(tar)], architecture="s390x")
        index = json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]}
        ).encode()
        reg.put_manifest("crafted", "1", index, "application/vnd.oci.image.index.v1+json")
    else:
        entry, config = _put_image(reg, "crafted", "1", [(blob, GZIP_LAYER)], [sha256(tar)])
        target = registry.blob_data(sha256(config) if case == "config" else entry["digest"])
        data = target.read_bytes()  # the same document, one space more: other bytes, other digest
        assert b'"schemaVersion": 2' in data or b'"os": "linux"' in data
        target.write_bytes(
            data.replace(b'"schemaVersion": 2', b'"schemaVersion":  2').replace(b'"os": "linux"', b'"os":  "linux"')
        )
    reg.close()
    line = one_error_line(cli("pull", f"{registry.host}/crafted:1", root=store2))
    assert message in line
    assert store_state(store2) == ([], []) and staging_dirs(store2) == []


# -- login and logout ---------------------------------------------------------------------------


def test_login_logout_with_an_htpasswd_registry(cli, store, busybox, auth_registry, minirun_config, store2):  # noqa: F811
    host = auth_registry.host
    ref = f"{host}/private:1"
    cli("tag", "busybox", ref)
    anonymous = cli("push", ref)
    assert "no basic auth credentials" in one_error_line(anonymous)

    wrong = cli("login", "-u", USER, "--password-stdin", host, input=b"wrong-password\n")
    assert "unauthorized" in one_error_line(wrong)
    assert not (minirun_config / "auth.json").exists()

    good = cli("login", "-u", USER, "--password-stdin", host, input=PASSWORD.encode() + b"\n")
    assert good.code == 0, good.err
    assert good.out == "Login Succeeded\n"
    assert PASSWORD not in good.out + good.err
    auth_file = minirun_config / "auth.json"
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(minirun_config.stat().st_mode) == 0o700
    assert list(json.loads(auth_file.read_text())["auths"]) == [host]
    assert not any(PASSWORD.encode() in p.read_bytes() for p in _files(store.root))  # never in the store

    assert cli("push", ref).code == 0
    assert cli("pull", ref, root=store2).code == 0
    assert cli("run", "--rm", ref, "echo", "ok", root=store2).out == "ok\n"

    assert cli("logout", host).out == f"Removing login credentials for {host}\n"
    assert json.loads(auth_file.read_text())["auths"] == {}
    assert cli("logout", host).out == f"Not logged in to {host}\n"
    assert "no basic auth credentials" in one_error_line(cli("pull", ref, root=store2))


def test_bearer_tokens_from_the_registrys_token_server(cli, store, busybox, token_registry, store2):  # noqa: F811
    server, tokens = token_registry
    one, two = f"{server.host}/team/one:1", f"{server.host}/team/two:1"
    image = app_image(store, busybox, one)
    cli("tag", one, two)
    anonymous = cli("push", one)  # an anonymous token grants pull only: the registry refuses
    assert "unauthorized" in one_error_line(anonymous)
    assert tokens.requests[-1] == (None, ["repository:team/one:pull,push"])

    wrong = cli("login", "-u", USER, "--password-stdin", server.host, input=b"nope\n")
    assert "incorrect username or password" in one_error_line(wrong)
    assert cli("login", "-u", USER, "--password-stdin", server.host, input=PASSWORD.encode()).code == 0
    assert cli("push", one).code == 0
    # one token for the push and the mount's source: the registry checks both scopes
    pushed = cli("push", two)
    assert pushed.code == 0, pushed.err
    assert tokens.requests[-1] == (USER, ["repository:team/two:pull,push", "repository:team/one:pull"])
    assert f"{short(image.diff_ids[-1])}: Mounted from team/one" in pushed.out.splitlines()

    assert cli("logout", server.host).code == 0  # anonymous pulls are allowed here
    pulled = cli("pull", two, root=store2)
    assert pulled.code == 0, pulled.err
    assert tokens.requests[-1] == (None, ["repository:team/two:pull"])
    assert cli("run", "--rm", two, root=store2).out == "hello from the registry\n"


def _files(root: str):
    from pathlib import Path

    for path in Path(root).rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 1 << 20:
            yield path


def test_login_flag_errors(cli, auth_registry):  # noqa: F811
    host = auth_registry.host
    both = cli("login", "-u", USER, "-p", PASSWORD, "--password-stdin", host)
    assert "mutually exclusive" in one_error_line(both)
    assert "--username" in one_error_line(cli("login", "--password-stdin", host, input=b"x"))
    assert "non TTY" in one_error_line(cli("login", host, input=b""))
    flag = cli("login", "-u", USER, "-p", PASSWORD, host)
    assert flag.code == 0 and "WARNING! Using --password via the CLI is insecure" in flag.err


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["pull", "127.0.0.1:1/UPPER"], "must be lowercase"),
        (["pull", "127.0.0.1:1/x@sha256:" + "a" * 40], "invalid checksum digest length"),
        (["pull", "127.0.0.1:1/x:bad tag"], "invalid reference format"),
        (["pull", ""], "invalid reference format"),
        (["push", "127.0.0.1:1/x@sha256:" + "a" * 64], "cannot push a digest reference"),
        (["push", "127.0.0.1:1/nothere:1"], "An image does not exist locally with the tag: 127.0.0.1:1/nothere"),
        (["pull", "127.0.0.1:1/x:1"], "connection refused"),
    ],
)
def test_bad_references_and_unreachable_registries(cli, args, message):
    assert message in one_error_line(cli(*args))


def test_missing_tag_and_repository(cli, registry):  # noqa: F811
    line = one_error_line(cli("pull", f"{registry.host}/nothing:here"))
    assert f"manifest for {registry.host}/nothing:here not found" in line
    assert cli("images", "-q").out == ""
