"""load_archive on archives built here, byte by byte, in every format it reads (docker-save legacy
and combined, OCI layouts; plain, gzip and zstd layers), and on every way an archive can be bad:
each bad one is one clear error and leaves the store as it was. save's archive layout is checked
against what docker writes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest
import zstandard

from minirun.distribution.imageload import Progress, load_archive
from minirun.distribution.imagesave import save_images
from minirun.errors import BadArchive, MinirunError
from minirun.image.manifests import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    image_manifest,
)
from minirun.store import Store
from tests.helpers import d, f, hard, make_image, make_tar, sym

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="layers keep owners: needs root")


# -- building archives ---------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def outer_tar(files: dict[str, bytes], symlinks: dict[str, str] | None = None, prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(prefix + name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


BASE = make_tar(
    [
        d("etc"),
        f("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        f("etc/group", "root:x:0:\n"),
        f("etc/motd", "base\n"),
        d("data"),
        *[f(f"data/{i}", os.urandom(3000)) for i in range(20)],
    ]
)
DELETE = make_tar([d("etc"), f("etc/.wh.group")])
REWRITE1 = make_tar([d("etc"), f("etc/motd", "v1\n")])
REWRITE2 = make_tar([d("etc"), f("etc/motd", "v2\n")])
LAYERS = [BASE, DELETE, REWRITE1, REWRITE2]


def config(layers: list[bytes], **extra) -> bytes:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in layers]},
        "history": [{"created_by": f"step {i}"} for i in range(len(layers))],
        **extra,
    }
    return json.dumps(doc, indent=2).encode()  # not minirun's own spelling: the bytes must be kept


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


MEDIA = {"": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}


def legacy_docker_archive(cfg: bytes, layers: list[bytes], tags: list[str]) -> bytes:
    """docker < 25: <v1 id>/layer.tar (a repeated layer as a symlink), <config hex>.json."""
    files, links, paths = {}, {}, []
    seen: dict[bytes, str] = {}
    for i, layer in enumerate(layers):
        v1 = hashlib.sha256(b"v1 %d" % i).hexdigest()
        files[f"{v1}/VERSION"] = b"1.0"
        files[f"{v1}/json"] = b"{}"
        if layer in seen:
            links[f"{v1}/layer.tar"] = f"../{seen[layer]}/layer.tar"
        else:
            files[f"{v1}/layer.tar"] = layer
            seen[layer] = v1
        paths.append(f"{v1}/layer.tar")
    name = sha(cfg).split(":")[1] + ".json"
    files[name] = cfg
    files["manifest.json"] = json.dumps([{"Config": name, "RepoTags": tags, "Layers": paths}]).encode()
    return outer_tar(files, links)


def oci_blobs(cfg: bytes, layers: list[bytes], compression: str = "") -> tuple[dict[str, bytes], bytes]:
    """The blobs of one image and its manifest's bytes."""
    blobs = {}
    descriptors = []
    for layer in layers:
        blob = compress(layer, compression)
        blobs[f"blobs/sha256/{sha(blob)[7:]}"] = blob
        descriptors.append({"mediaType": MEDIA[compression], "digest": sha(blob), "size": len(blob)})
    blobs[f"blobs/sha256/{sha(cfg)[7:]}"] = cfg
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha(cfg), "size": len(cfg)},
            "layers": descriptors,
        }
    ).encode()
    blobs[f"blobs/sha256/{sha(manifest)[7:]}"] = manifest
    return blobs, manifest


def oci_archive(
    cfg: bytes,
    layers: list[bytes],
    compression: str = "",
    annotations: dict | None = None,
    docker_manifest: list[str] | None = None,
    prefix: str = "",
) -> bytes:
    """An OCI layout; with docker_manifest (RepoTags) also docker >= 25's manifest.json."""
    files, manifest = oci_blobs(cfg, layers, compression)
    entry = {"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest)}
    if annotations:
        entry["annotations"] = annotations
    files["index.json"] = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}).encode()
    files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    if docker_manifest is not None:
        doc = json.loads(manifest)
        files["manifest.json"] = json.dumps(
            [
                {
                    "Config": f"blobs/sha256/{sha(cfg)[7:]}",
                    "RepoTags": docker_manifest,
                    "Layers": [f"blobs/sha256/{layer['digest'][7:]}" for layer in doc["layers"]],
                }
            ]
        ).encode()
    return outer_tar(files, prefix=prefix)


def load(store: Store, data: bytes, tmp_path, how: str = "file", **kw):
    if how == "file":
        path = tmp_path / "archive.tar"
        path.write_bytes(data)
        with open(path, "rb") as stream:
            return load_archive(store, stream, **kw)
    read_fd, write_fd = os.pipe()
    import threading

    def feed():
        with open(write_fd, "wb") as out:
            try:
                out.write(data)
            except BrokenPipeError:
                pass

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        with open(read_fd, "rb") as stream:
            return load_archive(store, stream, **kw)
    finally:
        feeder.join()


def merged_view(store: Store, image_id: str) -> dict[str, bytes | None]:
    """What a container would see of /etc: upper layers hide lower ones, whiteouts delete."""
    view: dict[str, bytes | None] = {}
    for diff_id in store.images.get(image_id).diff_ids:
        etc = os.path.join(store.layers.diff_dir(diff_id), "etc")
        for name in os.listdir(etc) if os.path.isdir(etc) else []:
            path = os.path.join(etc, name)
            view[name] = None if os.stat(path).st_rdev == 0 and not os.path.isfile(path) else open(path, "rb").read()
    return {k: v for k, v in view.items() if v is not None}


def assert_untouched(store: Store) -> None:
    """Nothing of a failed load is visible: no image, no tag, no layer, no staged debris."""
    assert store.images.ids() == []
    assert store.images.tags() == {}
    assert store.layers.all_ids() == []
    if os.path.isdir(store.layers.dir):
        assert [n for n in os.listdir(store.layers.dir) if n.startswith(".tmp-")] == []


# -- formats -------------------------------------------------------------------------------------

FORMATS = {
    "docker-legacy": lambda cfg: legacy_docker_archive(cfg, LAYERS, ["app:1"]),
    "docker-25-plain": lambda cfg: oci_archive(
        cfg,
        LAYERS,
        "",
        {"io.containerd.image.name": "docker.io/library/app:1", "org.opencontainers.image.ref.name": "1"},
        ["app:1"],
    ),
    "oci-gzip": lambda cfg: oci_archive(cfg, LAYERS, "gzip", {"org.opencontainers.image.ref.name": "app:1"}),
    "oci-zstd-dot-slash": lambda cfg: oci_archive(
        cfg, LAYERS, "zstd", {"io.containerd.image.name": "docker.io/library/app:1"}, prefix="./"
    ),
}


@pytest.mark.parametrize("how", ["file", "pipe"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_loads_with_the_exact_config(store, tmp_path, fmt, how):
    cfg = config(LAYERS)
    loaded = load(store, FORMATS[fmt](cfg), tmp_path, how)
    assert [(image.image_id, image.refs) for image in loaded] == [(sha(cfg), ["app:1"])]
    assert store.images.raw_config(sha(cfg)) == cfg  # docker's image id: the config's own digest
    assert store.images.tags() == {"app:1": sha(cfg)}
    view = merged_view(store, sha(cfg))
    assert "group" not in view and view["motd"] == b"v2\n" and view["passwd"].startswith(b"root:")
    for layer in LAYERS:  # layers come back as the exact tars (what save will write)
        with store.layers.open_tar(sha(layer)) as tar:
            assert tar.read() == layer


def test_a_compressed_archive_on_stdin_is_spooled_and_decompressed(store, tmp_path):
    cfg = config(LAYERS)
    loaded = load(store, gzip.compress(legacy_docker_archive(cfg, LAYERS, ["app:1"])), tmp_path, "pipe")
    assert loaded[0].image_id == sha(cfg)
    assert [
        n
        for n in os.listdir(store.root)
        if not n.startswith(("layers", "l", "images", "containers", "lock", "tags", "events"))
    ] == []


def test_untagged_and_bare_tag_names(store, tmp_path):
    cfg = config(LAYERS[:1])
    # skopeo's `oci:dir:latest` writes only a tag: no repository, so the image loads untagged
    loaded = load(
        store, oci_archive(cfg, LAYERS[:1], annotations={"org.opencontainers.image.ref.name": "latest"}), tmp_path
    )
    assert loaded[0].refs == [] and store.images.tags() == {}
    cfg2 = config(LAYERS[:1], author="x")
    loaded = load(
        store,
        oci_archive(cfg2, LAYERS[:1], annotations={"io.containerd.image.name": "docker.io/someone/tool:2.0"}),
        tmp_path,
    )
    assert loaded[0].refs == ["someone/tool:2.0"]


class Recorder(Progress):
    def __init__(self):
        self.notes = {}
        self.advanced = {}

    def layer_advanced(self, key, nbytes):
        self.advanced[key] = self.advanced.get(key, 0) + nbytes

    def layer_finished(self, key, note):
        self.notes[key] = note


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_counts_every_byte_of_every_layer(store, tmp_path, workers):
    big = make_tar([d("big"), f("big/blob", os.urandom(3 << 20))])  # several progress reports
    layers = LAYERS + [big]
    recorder = Recorder()
    load(store, oci_archive(config(layers), layers, "gzip"), tmp_path, progress=recorder, workers=workers)
    assert recorder.advanced == {sha(t): len(compress(t, "gzip")) for t in layers}
    assert set(recorder.notes.values()) == {"Loaded"}


def test_layers_already_stored_are_not_unpacked_again(store, tmp_path):
    base_only = config(LAYERS[:1])
    load(store, oci_archive(base_only, LAYERS[:1], "gzip"), tmp_path)
    base_dir = store.layers.diff_dir(sha(BASE))
    inode = os.stat(os.path.join(base_dir, "etc", "passwd")).st_ino
    recorder = Recorder()
    cfg = config(LAYERS)
    load(store, legacy_docker_archive(cfg, LAYERS, ["app:1"]), tmp_path, progress=recorder)
    assert recorder.notes[sha(BASE)] == "Already exists"
    assert [recorder.notes[sha(t)] for t in LAYERS[1:]] == ["Loaded"] * 3
    assert os.stat(os.path.join(base_dir, "etc", "passwd")).st_ino == inode


def test_a_layer_used_twice_is_unpacked_once(store, tmp_path):
    layers = [BASE, REWRITE1, REWRITE2, REWRITE1]  # the same tar twice, as a symlink in the archive
    cfg = config(layers)
    recorder = Recorder()
    loaded = load(store, legacy_docker_archive(cfg, layers, []), tmp_path, progress=recorder, workers=3)
    assert loaded[0].refs == [] and len(recorder.notes) == 3
    assert store.images.get(sha(cfg)).diff_ids == [sha(t) for t in layers]


def test_index_of_platforms_picks_the_hosts(store, tmp_path):
    from minirun.image.manifests import host_platform

    cfg = config(LAYERS[:2])
    files, manifest = oci_blobs(cfg, LAYERS[:2], "gzip")
    other_cfg = config(LAYERS[:1], architecture="s390x")
    other_files, other_manifest = oci_blobs(other_cfg, LAYERS[:1])
    files.update(other_files)
    _, arch, _ = host_platform()
    nested = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": sha(other_manifest),
                    "size": len(other_manifest),
                    "platform": {"os": "linux", "architecture": "s390x"},
                },
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": sha(manifest),
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": arch},
                },
            ],
        }
    ).encode()
    files[f"blobs/sha256/{sha(nested)[7:]}"] = nested
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    files["index.json"] = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": OCI_INDEX,
                    "digest": sha(nested),
                    "size": len(nested),
                    "annotations": {"org.opencontainers.image.ref.name": "localhost/multi:1"},
                }
            ],
        }
    ).encode()
    loaded = load(store, outer_tar(files), tmp_path)
    assert [(i.image_id, i.refs) for i in loaded] == [(sha(cfg), ["localhost/multi:1"])]
    assert sha(other_cfg) not in store.images.ids()


def test_index_without_the_hosts_platform_names_what_it_has(store, tmp_path):
    cfg = config(LAYERS[:1], architecture="s390x")
    files, manifest = oci_blobs(cfg, LAYERS[:1])
    nested = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": sha(manifest),
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": "s390x"},
                }
            ],
        }
    ).encode()
    files[f"blobs/sha256/{sha(nested)[7:]}"] = nested
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    files["index.json"] = json.dumps(
        {"schemaVersion": 2, "manifests": [{"mediaType": OCI_INDEX, "digest": sha(nested), "size": len(nested)}]}
    ).encode()
    with pytest.raises(MinirunError, match=r"no image for linux/\w+ .*available: linux/s390x"):
        load(store, outer_tar(files), tmp_path)
    assert_untouched(store)


# -- bad archives ----------------------------------------------------------------------------------


def _flip(data: bytes, blob: bytes, at: int = -40) -> bytes:
    """The archive with one byte of `blob` changed (same length)."""
    start = data.index(blob)
    pos = start + (at % len(blob))
    return data[:pos] + bytes([data[pos] ^ 0x55]) + data[pos + 1 :]


def _bad_cases():
    cfg = config(LAYERS)
    gz = [compress(t, "gzip") for t in LAYERS]
    oci_gz = oci_archive(cfg, LAYERS, "gzip", {"org.opencontainers.image.ref.name": "app:1"})
    oci_plain = oci_archive(cfg, LAYERS, "", {"org.opencontainers.image.ref.name": "app:1"})
    legacy = legacy_docker_archive(cfg, LAYERS, ["app:1"])
    wrong_diff_id = config(LAYERS[:3] + [make_tar([f("other", "x")])])  # not what the top layer is
    files, manifest = oci_blobs(cfg, LAYERS, "gzip")
    del files[f"blobs/sha256/{sha(gz[2])[7:]}"]
    files["index.json"] = json.dumps(
        {"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest)}]}
    ).encode()
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    missing_blob = outer_tar(files)
    files, manifest = oci_blobs(cfg, LAYERS, "gzip")
    doc = json.loads(manifest)
    doc["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    manifest = json.dumps(doc).encode()
    files[f"blobs/sha256/{sha(manifest)[7:]}"] = manifest
    files["index.json"] = json.dumps(
        {"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest)}]}
    ).encode()
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    foreign = outer_tar(files)
    no_manifest = outer_tar({"hello.txt": b"not an image"})
    deep = b"[" * 100_000  # nested deeper than json's recursion goes
    oci_layout = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    deep_oci_manifest = {
        **oci_layout,
        f"blobs/sha256/{sha(deep)[7:]}": deep,
        "index.json": json.dumps(
            {"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha(deep), "size": len(deep)}]}
        ).encode(),
    }
    too_many = json.dumps([{"Config": "c.json", "Layers": []}] * 1001).encode()
    index_entry = {"mediaType": OCI_MANIFEST, "digest": sha(b"x"), "size": 1}
    too_many_oci = json.dumps({"schemaVersion": 2, "manifests": [index_entry] * 1001}).encode()
    return {
        "deeply nested manifest.json": (
            outer_tar({"manifest.json": deep}),
            r"manifest.json: invalid JSON \(nested too deeply\)",
        ),
        "deeply nested index.json": (outer_tar({**oci_layout, "index.json": deep}), r"image index: invalid JSON"),
        "deeply nested manifest": (outer_tar(deep_oci_manifest), r"index.json entry 1: invalid JSON"),
        "deeply nested config": (legacy_docker_archive(deep, LAYERS, ["app:1"]), r"entry 1 config: invalid JSON"),
        "more than 1000 images": (
            outer_tar({"manifest.json": too_many}),
            r"manifest.json: 1001 entries, more than the 1000",
        ),
        "more than 1000 index entries": (
            outer_tar({**oci_layout, "index.json": too_many_oci}),
            r"index.json: 1001 entries, more than the 1000",
        ),
        "truncated in a layer": (legacy[: legacy.index(BASE) + 5000], r"truncated archive"),
        "truncated at a member boundary": (oci_gz[: len(oci_gz) - 2048 - 512], r"truncated|missing"),
        "cut before the end marker": (oci_gz[: oci_gz.rindex(b'{"imageLayoutVersion"') + 512], r"truncated"),
        "corrupted gzip layer": (
            _flip(oci_gz, gz[0], len(gz[0]) // 2),
            r"layer 1 .*(digest mismatch|invalid compressed|invalid tar)",
        ),
        "corrupted plain layer": (_flip(oci_plain, BASE, BASE.index(b"root:x")), r"layer 1 .*digest mismatch"),
        "corrupted config": (_flip(oci_gz, cfg, 10), r"config.*digest mismatch"),
        "diff_id does not match the config": (
            legacy_docker_archive(wrong_diff_id, LAYERS, ["app:1"]),
            r"layer 4 .*diff_id mismatch",
        ),
        "missing blob": (missing_blob, r"layer 3 .*missing from the archive"),
        "no manifest.json nor index.json": (no_manifest, r"neither manifest.json"),
        "foreign layer": (foreign, r"foreign"),
        "not a tar": (os.urandom(4096), r"invalid archive"),
        "empty": (b"", r"empty input|invalid archive"),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_archive_is_one_clear_error_and_stores_nothing(store, tmp_path, case):
    data, message = BAD[case]
    with pytest.raises(MinirunError, match=message) as caught:
        load(store, data, tmp_path, workers=4)
    assert "\n" not in caught.value.message
    assert_untouched(store)


def test_a_bad_layer_among_good_ones_discards_the_good_ones_too(store, tmp_path):
    big = [make_tar([d(f"d{i}"), *[f(f"d{i}/{j}", os.urandom(2000)) for j in range(200)]]) for i in range(5)]
    cfg = config(big)
    data = oci_archive(cfg, big, "gzip")
    broken = _flip(data, compress(big[2], "gzip"), 5000)
    with pytest.raises(BadArchive):
        load(store, broken, tmp_path, workers=3)
    assert_untouched(store)


def test_workers_that_end_between_two_layers_leave_no_layer_unpacked(store, tmp_path, monkeypatch):
    """A worker killed right after it reported a layer takes no more; when none is left for
    the layers still to do, the load fails and stores nothing. (Without the check after the
    loop, such a load returned with layers staged but never filled.)"""
    import select
    import signal

    from minirun.distribution import layerworkers

    send = layerworkers._Worker.send
    sent: set[int] = set()

    def killed_after_one(self, index):
        if self.pid in sent:  # its first layer is done: it dies before the next one comes
            pidfd = os.pidfd_open(self.pid)
            os.kill(self.pid, signal.SIGKILL)
            select.select([pidfd], [], [])
            os.close(pidfd)
        sent.add(self.pid)
        return send(self, index)

    monkeypatch.setattr(layerworkers._Worker, "send", killed_after_one)
    layers = [make_tar([d(f"d{i}"), f(f"d{i}/x", os.urandom(1000))]) for i in range(5)]
    with pytest.raises(MinirunError, match="the workers ended before unpacking it"):
        load(store, oci_archive(config(layers), layers, "gzip"), tmp_path, workers=2)
    assert_untouched(store)


@pytest.mark.parametrize(("policy", "writers"), [("as decided", 1), ("always", 4), ("never", 0)])
def test_workers_fork_file_writers_only_as_decided(store, tmp_path, monkeypatch, policy, writers):
    """Busy workers create a layer's files themselves (layerworkers._writers_help: here only the
    last of four layers for two workers gets a writer); with or without, the same layers."""
    from minirun.distribution import layerworkers
    from minirun.layer import archive, filewriter

    if not filewriter.can_fork():
        pytest.skip("a writer needs two CPUs and a single-threaded process")
    log = tmp_path / "writers.log"  # appended to by the workers: forked, they share no memory with us
    real = archive.FileWriter

    def logged(*args, **kw):
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(fd, b"w")
        os.close(fd)
        return real(*args, **kw)

    monkeypatch.setattr(archive, "FileWriter", logged)
    if policy != "as decided":
        monkeypatch.setattr(layerworkers, "_writers_help", lambda sizes, workers: [policy == "always"] * len(sizes))
    layers = [
        make_tar([d(f"d{i}"), f(f"d{i}/x", os.urandom(20_000 + i), uid=i), hard(f"d{i}/y", f"d{i}/x"), sym("s", "d")])
        for i in range(4)
    ]
    cfg = config(layers)
    load(store, oci_archive(cfg, layers), tmp_path, workers=2)  # plain layers: read in place
    assert (log.read_bytes() if log.exists() else b"") == b"w" * writers
    assert store.images.get(sha(cfg)).diff_ids == [sha(layer) for layer in layers]
    for i, layer in enumerate(layers):
        with store.layers.open_tar(sha(layer)) as tar:
            assert tar.read() == layer
        st = os.stat(os.path.join(store.layers.diff_dir(sha(layer)), f"d{i}", "y"))
        assert (st.st_nlink, st.st_uid) == (2, i)


def test_manifest_json_layer_count_must_match_the_config(store, tmp_path):
    cfg = config(LAYERS[:2])
    with pytest.raises(BadArchive, match="3 layers, but its config lists 2 diff_ids"):
        load(store, legacy_docker_archive(cfg, LAYERS[:3], []), tmp_path)
    assert_untouched(store)


# -- save ----------------------------------------------------------------------------------------


def test_save_writes_dockers_combined_layout(store, tmp_path):
    base = make_image(store, "base:1", [BASE])
    app = make_image(store, "app:1", [REWRITE1], base=base)
    from minirun.store.reference import parse_reference

    store.images.tag(parse_reference("app:latest"), app.id)
    out = io.BytesIO()
    save_images(store, ["app", "base:1"], out)
    data = out.getvalue()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        read = lambda name: tar.extractfile(name).read()  # noqa: E731
        manifest = json.loads(read("manifest.json"))
        index = json.loads(read("index.json"))
        repositories = json.loads(read("repositories"))
        assert read("oci-layout") == b'{"imageLayoutVersion": "1.0.0"}'
        assert read(f"blobs/sha256/{sha(BASE)[7:]}") == BASE  # the shared layer, once
        oci_manifest = read(f"blobs/sha256/{index['manifests'][0]['digest'][7:]}")
    assert names == sorted(names) and names[:2] == ["blobs", "blobs/sha256"]
    assert names.count(f"blobs/sha256/{sha(BASE)[7:]}") == 1
    assert manifest == [
        {
            "Config": f"blobs/sha256/{app.hex}",
            "RepoTags": ["app:1", "app:latest"],
            "Layers": [f"blobs/sha256/{sha(BASE)[7:]}", f"blobs/sha256/{sha(REWRITE1)[7:]}"],
        },
        {"Config": f"blobs/sha256/{base.hex}", "RepoTags": ["base:1"], "Layers": [f"blobs/sha256/{sha(BASE)[7:]}"]},
    ]
    assert repositories == {"app": {"1": sha(REWRITE1)[7:], "latest": sha(REWRITE1)[7:]}, "base": {"1": sha(BASE)[7:]}}
    assert [m["annotations"] for m in index["manifests"]] == [
        {"io.containerd.image.name": "docker.io/library/app:1", "org.opencontainers.image.ref.name": "1"},
        {"io.containerd.image.name": "docker.io/library/app:latest", "org.opencontainers.image.ref.name": "latest"},
        {"io.containerd.image.name": "docker.io/library/base:1", "org.opencontainers.image.ref.name": "1"},
    ]
    assert oci_manifest == image_manifest(store, app)
    assert json.loads(oci_manifest)["layers"][1] == {
        "mediaType": OCI_LAYER,
        "digest": sha(REWRITE1),
        "size": len(REWRITE1),
    }
    # same images, same bytes
    again = io.BytesIO()
    save_images(store, ["app", "base:1"], again)
    assert again.getvalue() == data


def test_save_by_id_has_no_tags_and_round_trips(store, tmp_path):
    image = make_image(store, "solo:1", [BASE, DELETE])
    out = io.BytesIO()
    save_images(store, [image.short_id], out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert json.loads(tar.extractfile("manifest.json").read())[0]["RepoTags"] is None
        assert "repositories" not in tar.getnames()
        assert "annotations" not in json.loads(tar.extractfile("index.json").read())["manifests"][0]
    other = Store(str(tmp_path / "other"))
    loaded = load(other, out.getvalue(), tmp_path)
    assert [(i.image_id, i.refs) for i in loaded] == [(image.id, [])]
    assert other.images.raw_config(image.id) == store.images.raw_config(image.id)


def test_several_images_round_trip_in_one_archive(store, tmp_path):
    base = make_image(store, "base:1", [BASE])
    app = make_image(store, "app:1", [DELETE, REWRITE1], base=base)
    out = io.BytesIO()
    save_images(store, ["app:1", "base:1"], out)
    other = Store(str(tmp_path / "other"))
    recorder = Recorder()
    loaded = load(other, out.getvalue(), tmp_path, progress=recorder)
    assert [(i.image_id, i.refs) for i in loaded] == [(app.id, ["app:1"]), (base.id, ["base:1"])]
    assert len(recorder.notes) == 3  # the shared base layer once
    assert other.images.tags() == store.images.tags()


def test_save_refuses_a_layer_it_cannot_rebuild_and_leaves_no_file(store, tmp_path):
    from minirun.distribution.imagesave import save_to_file

    image = make_image(store, "edited:1", [BASE, REWRITE1])
    # a lower dir changed behind the store's back: the rebuilt tar no longer has the layer's digest
    motd = os.path.join(store.layers.diff_dir(sha(REWRITE1)), "etc", "motd")
    with open(motd, "wb") as out:
        out.write(b"v9\n")
    target = tmp_path / "out.tar"
    with pytest.raises(MinirunError) as caught:
        save_to_file(store, ["edited:1"], str(target))
    assert sha(REWRITE1) in caught.value.message and "\n" not in caught.value.message
    assert os.listdir(tmp_path) == ["store"]
    # a layer stored without its tar record (an older store) cannot be exported at all
    os.unlink(os.path.join(store.layers.layer_dir(sha(BASE)), "tar-split"))
    with pytest.raises(MinirunError, match="cannot be exported"):
        save_to_file(store, [image.id], str(target))
    assert os.listdir(tmp_path) == ["store"]


# -- manifests.py, the documents alone -------------------------------------------------------------


def test_manifest_documents_are_validated_with_one_clear_line():
    from minirun.image.manifests import is_index, layer_media_compression, parse_manifest

    good = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": "sha256:" + "a" * 64, "size": 2},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": "sha256:" + "b" * 64, "size": 10}],
    }
    assert parse_manifest(json.dumps(good).encode()) == good
    bad = {
        "not json": (b"{", "invalid JSON"),
        "schema 1": (json.dumps({**good, "schemaVersion": 1}).encode(), "schema 1"),
        "an index": (json.dumps({**good, "mediaType": OCI_INDEX}).encode(), "image index"),
        "short digest": (
            json.dumps({**good, "config": {**good["config"], "digest": "sha256:abc"}}).encode(),
            "invalid digest",
        ),
        "sha512": (
            json.dumps({**good, "config": {**good["config"], "digest": "sha512:" + "a" * 128}}).encode(),
            "unsupported digest algorithm",
        ),
        "string size": (json.dumps({**good, "layers": [{**good["layers"][0], "size": "10"}]}).encode(), "invalid size"),
        "no layer type": (
            json.dumps({**good, "layers": [{"digest": "sha256:" + "b" * 64, "size": 1}]}).encode(),
            "invalid media type",
        ),
        "too many layers": (json.dumps({**good, "layers": good["layers"] * 1001}).encode(), "1001 layers"),
    }
    for name, (data, message) in bad.items():
        with pytest.raises(BadArchive, match=message) as caught:
            parse_manifest(data)
        assert "\n" not in caught.value.message, name
    assert is_index({"manifests": []}, None) and is_index({}, OCI_INDEX) and not is_index(good, None)
    assert [layer_media_compression(t) for t in (OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD)] == ["", "gzip", "zstd"]
    assert layer_media_compression("application/vnd.docker.image.rootfs.diff.tar.gzip") == "gzip"
    for media_type in ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "text/plain", None):
        with pytest.raises(MinirunError):
            layer_media_compression(media_type)


def test_names_between_docker_and_minirun_spelling():
    from minirun.image.manifests import familiar_name, full_name

    pairs = {
        "busybox": "docker.io/library/busybox",
        "someone/tool": "docker.io/someone/tool",
        "localhost/wh": "localhost/wh",
        "127.0.0.1:5000/a/b": "127.0.0.1:5000/a/b",
    }
    for short, full in pairs.items():
        assert full_name(short) == full and familiar_name(full) == short
    assert familiar_name("docker.io/library/a/b") == "library/a/b"


# -- limits: what a small crafted archive may make load hold ---------------------------------------


def _padded_config(layers: list[bytes], size: int, n: int = 0) -> bytes:
    cfg = config(layers, comment=f"{n}:")
    return cfg[:-1] + b', "pad": "' + b"p" * (size - len(cfg) - 11) + b'"}'


def test_configs_are_bounded_one_by_one_and_in_all(store, tmp_path):
    # the configs of all images are held until they are committed: 5 x 7 MiB is more than 32 MiB
    configs = [_padded_config(LAYERS[:1], 7 << 20, n) for n in range(5)]
    assert all(len(json.loads(c)["pad"]) > 0 and len(c) == 7 << 20 for c in configs)
    files = {f"{sha(c)[7:]}.json": c for c in configs}
    files["layer.tar"] = BASE
    files["manifest.json"] = json.dumps(
        [{"Config": f"{sha(c)[7:]}.json", "Layers": ["layer.tar"]} for c in configs]
    ).encode()
    with pytest.raises(BadArchive, match=r"entry 5 config: the archive's image configs take more than 32 MiB"):
        load(store, outer_tar(files), tmp_path)
    assert_untouched(store)
    # one config whose descriptor claims more than 8 MiB is not read at all
    cfg = config(LAYERS[:1])
    files, manifest = oci_blobs(cfg, LAYERS[:1])
    doc = json.loads(manifest)
    doc["config"]["size"] = 9 << 20
    manifest = json.dumps(doc).encode()
    files[f"blobs/sha256/{sha(manifest)[7:]}"] = manifest
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    files["index.json"] = json.dumps(
        {"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest)}]}
    ).encode()
    with pytest.raises(
        BadArchive, match=r"index.json entry 1 config: sha256:\w+ is too large \(9437184 bytes, at most 8388608\)"
    ):
        load(store, outer_tar(files), tmp_path)
    assert_untouched(store)


def test_entries_naming_one_image_load_it_once_with_every_name(store, tmp_path):
    cfg = config(LAYERS)
    files, manifest = oci_blobs(cfg, LAYERS, "gzip")
    entry = {"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest)}
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    files["index.json"] = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                dict(entry, annotations={"io.containerd.image.name": f"docker.io/library/app:{n % 7}"})
                for n in range(1000)
            ],
        }
    ).encode()
    loaded = load(store, outer_tar(files), tmp_path)
    assert [(i.image_id, i.refs) for i in loaded] == [(sha(cfg), [f"app:{n}" for n in range(7)])]


def _headers(names) -> bytes:
    out = bytearray()
    for name in names:
        info = tarfile.TarInfo(name)
        out += info.tobuf(format=tarfile.PAX_FORMAT)
    return bytes(out + bytes(1024))


def test_an_archive_of_countless_files_or_huge_names_is_not_indexed(store, tmp_path):
    many = _headers(f"f{n}" for n in range(100_001))
    with pytest.raises(BadArchive, match=r"not an image archive: more than 100000 files, or names of more than 16 MiB"):
        load(store, many, tmp_path)
    long_names = _headers(f"{n:04}" + "n" * 1_000_000 for n in range(17))  # PAX paths of ~1 MB each
    with pytest.raises(BadArchive, match=r"not an image archive: more than 100000 files, or names of more than 16 MiB"):
        load(store, long_names, tmp_path)
    assert_untouched(store)
