"""Image manifests and indexes (OCI image-spec and docker's v2 schema 2): media types, parsing with
validation, the host's entry of a multi-platform index, and the manifest of a stored image.

Shared by load/save (archives) and pull/push (registries): everything here is about documents, not
about where they come from.
"""

from __future__ import annotations

import hashlib
import json
import re

from minirun.errors import BadArchive, MinirunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.store import Store
    from minirun.store.images import Image

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = DOCKER_LAYER + ".gzip"
DOCKER_LAYER_ZSTD = DOCKER_LAYER + ".zstd"
# Layers whose content lives elsewhere (Windows base layers): a registry may not serve them, and an
# image using one cannot be rebuilt from what is at hand.
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_NONDISTRIBUTABLE_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar"
FOREIGN_LAYERS = (
    DOCKER_FOREIGN_LAYER,
    OCI_NONDISTRIBUTABLE_LAYER,
    OCI_NONDISTRIBUTABLE_LAYER + "+gzip",
    OCI_NONDISTRIBUTABLE_LAYER + "+zstd",
)
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
MAX_LAYERS = 1000  # a 4 MiB manifest could list ~40,000, each a download and an unpack
INDEXES = (OCI_INDEX, DOCKER_LIST)

# Index annotations naming an image: containerd's full name, and OCI's (a tag, or a full name).
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

_COMPRESSION = {
    OCI_LAYER: "",
    DOCKER_LAYER: "",
    OCI_LAYER_GZIP: "gzip",
    DOCKER_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    DOCKER_LAYER_ZSTD: "zstd",
}
_SHA256_RE = re.compile(r"sha256:[a-f0-9]{64}")


# -- digests and descriptors -------------------------------------------------------------------


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: object, what: str) -> str:
    """A `sha256:<64 hex>` digest, or BadArchive naming `what`."""
    if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
        algorithm = digest.partition(":")[0] if isinstance(digest, str) and ":" in digest else ""
        if algorithm and algorithm != "sha256":
            raise BadArchive(f"{what}: unsupported digest algorithm {algorithm!r}")
        raise BadArchive(f"{what}: invalid digest {digest!r}")
    return digest


def check_descriptor(desc: object, what: str, media_type_required: bool = False) -> dict:
    """A descriptor with a valid sha256 digest and an integer size (and a string media type)."""
    if not isinstance(desc, dict):
        raise BadArchive(f"{what}: not a descriptor")
    check_digest(desc.get("digest"), what)
    size = desc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadArchive(f"{what}: invalid size {size!r}")
    media_type = desc.get("mediaType")
    if media_type is None and media_type_required or media_type is not None and not isinstance(media_type, str):
        raise BadArchive(f"{what}: invalid media type {media_type!r}")
    return desc


def verify_blob(data: bytes, desc: dict, what: str) -> bytes:
    """`data` if it is the blob `desc` describes; a clear error otherwise."""
    if len(data) != desc["size"]:
        raise BadArchive(f"{what}: size {len(data)} does not match its descriptor ({desc['size']})")
    actual = sha256_digest(data)
    if actual != desc["digest"]:
        raise BadArchive(f"{what}: digest mismatch (expected {desc['digest']}, got {actual})")
    return data


# -- image configs -----------------------------------------------------------------------------

# The JSON types of the config fields docker decodes into typed structs (image.Image, its
# history, container.Config, its healthcheck): a config with another type there fails docker's
# load and pull. Taken as it was, such an image made history, inspect, run and `images REPO` fail
# with internal errors, or (a history that is no list) could be neither read nor removed. null is
# what docker writes for an empty container.Config list or map, so it passes there; the image's
# own fields and its history entries it never writes as null (omitempty), and our readers take
# them as the type. Fields not named here are not looked at, as in Go.
_STRS, _STR_MAP, _OBJ_MAP = "strings", "string map", "object map"
_IMAGE_FIELDS: dict[str, object] = {
    **dict.fromkeys(("architecture", "os", "variant", "os.version", "author", "comment", "created"), str),
    **dict.fromkeys(("docker_version", "container", "parent", "id"), str),
    **dict.fromkeys(("config", "container_config", "rootfs"), dict),
    "history": list,
    "os.features": _STRS,
}
_HISTORY_FIELDS: dict[str, object] = {
    **dict.fromkeys(("created", "created_by", "author", "comment"), str),
    "empty_layer": bool,
}
_CONTAINER_FIELDS: dict[str, object] = {
    **dict.fromkeys(("Hostname", "Domainname", "User", "Image", "WorkingDir", "MacAddress", "StopSignal"), str),
    **dict.fromkeys(("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"), bool),
    **dict.fromkeys(("ArgsEscaped", "NetworkDisabled"), bool),
    **dict.fromkeys(("Env", "Cmd", "Entrypoint", "Shell", "OnBuild"), _STRS),
    "StopTimeout": int,
    "Labels": _STR_MAP,
    **dict.fromkeys(("ExposedPorts", "Volumes"), _OBJ_MAP),
    "Healthcheck": dict,
}
_HEALTHCHECK_FIELDS: dict[str, object] = {
    "Test": _STRS,
    **dict.fromkeys(("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"), int),
}


# Entries in a config's history: one per Dockerfile step, so a real image has tens, and each is
# work for every command that relates images (`images`, `history`, `rmi`); an 8 MiB config holds
# millions of `{}`.
MAX_HISTORY = 10 * MAX_LAYERS


def check_config(config: dict, what: str) -> None:
    """BadArchive naming `what` and the field when a field of the image config `config` has a
    JSON type docker's decoding refuses (_IMAGE_FIELDS and below), or its history is longer than
    MAX_HISTORY."""
    _check_fields(config, _IMAGE_FIELDS, what, nullable=False)
    if len(config.get("history", [])) > MAX_HISTORY:
        raise BadArchive(f"{what}: {len(config['history'])} history entries, more than the {MAX_HISTORY} taken")
    for i, entry in enumerate(config.get("history", [])):
        if not isinstance(entry, dict):
            raise BadArchive(f"{what}: history entry {i + 1} is not an object")
        _check_fields(entry, _HISTORY_FIELDS, what, f"history entry {i + 1} ", nullable=False)
    for key in ("config", "container_config"):
        container = config.get(key, {})
        _check_fields(container, _CONTAINER_FIELDS, what, f"{key}.")
        _check_fields(container.get("Healthcheck") or {}, _HEALTHCHECK_FIELDS, what, f"{key}.Healthcheck.")


def _check_fields(
    document: dict, fields: dict[str, object], what: str, prefix: str = "", nullable: bool = True
) -> None:
    for name, kind in fields.items():
        if name not in document:
            continue
        value = document[name]
        if (value is not None or not nullable) and not _has_kind(value, kind):
            raise BadArchive(f"{what}: {prefix}{name} is not {_KIND_NAMES.get(kind, kind)}: {_shown(value)}")


def _shown(value: object) -> str:
    try:
        return json.dumps(value)[:80]
    except RecursionError:  # parsed, yet nested deeper than the encoder goes
        return type(value).__name__


_KIND_NAMES: dict[object, str] = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    dict: "an object",
    list: "a list",
    _STRS: "a list of strings",
    _STR_MAP: "a map of strings",
    _OBJ_MAP: "a map of objects",
}


def _has_kind(value: object, kind: object) -> bool:
    if kind == _STRS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == _STR_MAP:
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if kind == _OBJ_MAP:
        return isinstance(value, dict) and all(v is None or isinstance(v, dict) for v in value.values())
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)  # type: ignore[arg-type]  # None is no str, dict, list, bool


# -- manifests and indexes ---------------------------------------------------------------------


def parse_json(data: bytes, what: str) -> object:
    """A JSON document from outside (an archive, a registry), or BadArchive naming `what`."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadArchive(f"{what}: invalid JSON ({str(exc).splitlines()[0]})") from None
    except RecursionError:  # "[" * 100000: nested deeper than the parser goes
        raise BadArchive(f"{what}: invalid JSON (nested too deeply)") from None


def load_json(data: bytes, what: str) -> dict:
    """A JSON object from outside, or BadArchive naming `what`."""
    doc = parse_json(data, what)
    if not isinstance(doc, dict):
        raise BadArchive(f"{what}: not a JSON object")
    return doc


def parse_manifest(data: bytes) -> dict:
    """An image manifest (OCI or docker v2 schema 2), validated: schemaVersion 2, a config
    descriptor and layer descriptors with sha256 digests and integer sizes."""
    doc = load_json(data, "image manifest")
    media_type = doc.get("mediaType")
    if media_type in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise BadArchive("image manifest: docker schema 1 manifests are not supported")
    if doc.get("schemaVersion") != 2:
        raise BadArchive(f"image manifest: unsupported schemaVersion {doc.get('schemaVersion')!r}")
    if media_type in INDEXES:
        raise BadArchive("image manifest: is an image index, not a manifest")
    if media_type is not None and media_type not in MANIFESTS:
        raise BadArchive(f"image manifest: unsupported media type {media_type!r}")
    check_descriptor(doc.get("config"), "image manifest config")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise BadArchive("image manifest: no layer list")
    if len(layers) > MAX_LAYERS:
        raise BadArchive(
            f"image manifest: {len(layers)} layers (overlayfs stacks at most 500; refusing more than {MAX_LAYERS})"
        )
    for i, layer in enumerate(layers):
        check_descriptor(layer, f"image manifest layer {i + 1}", media_type_required=True)
    return doc


def parse_index(data: bytes) -> dict:
    """An image index / manifest list, validated: schemaVersion 2 and a list of descriptors."""
    doc = load_json(data, "image index")
    if doc.get("schemaVersion") != 2:
        raise BadArchive(f"image index: unsupported schemaVersion {doc.get('schemaVersion')!r}")
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise BadArchive("image index: no manifest list")
    for i, desc in enumerate(manifests):
        check_descriptor(desc, f"image index entry {i + 1}")
    return doc


def is_index(doc: dict, media_type: str | None) -> bool:
    """True for an image index or docker manifest list, told by the media type given (a
    descriptor's or a Content-Type), by its own, or by its shape when neither says."""
    for declared in (media_type, doc.get("mediaType")):
        if declared in INDEXES:
            return True
        if declared in MANIFESTS:
            return False
    return "manifests" in doc and "config" not in doc


def layer_media_compression(media_type: str | None) -> str:
    """ "", "gzip" or "zstd" for a layer media type; refuses foreign and unknown layers."""
    if media_type in FOREIGN_LAYERS:
        raise MinirunError(
            f"refusing foreign (non-distributable) layer of type {media_type}: its content is not part of the image"
        )
    try:
        return _COMPRESSION[media_type]  # type: ignore[index]
    except KeyError:
        raise MinirunError(f"unsupported layer media type {media_type!r}") from None


# -- platforms ---------------------------------------------------------------------------------


def host_platform() -> tuple[str, str, str | None]:
    """(os, architecture, variant) of this machine, in OCI's spelling."""
    import os

    from minirun.image.embedded import host_architecture

    machine = os.uname().machine
    variant = {"aarch64": "v8", "armv7l": "v7", "armv6l": "v6"}.get(machine)
    return "linux", host_architecture(), variant


def _platform_text(platform: dict) -> str:
    parts = [str(platform.get("os", "?")), str(platform.get("architecture", "?"))]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts)


def pick_platform(index: dict) -> dict:
    """The index entry for the host (linux, its architecture, its variant where one is given);
    an error listing the platforms on offer when there is none."""
    os_, arch, variant = host_platform()
    offered = [d for d in index.get("manifests", []) if isinstance(d, dict)]
    matching = [
        d
        for d in offered
        if isinstance(d.get("platform"), dict)
        and d["platform"].get("os") == os_
        and d["platform"].get("architecture") == arch
    ]
    # arm64 images often say no variant (v8 is implied); a stated one must match the host's.
    exact = [d for d in matching if d["platform"].get("variant") in (variant, None)]
    exact.sort(key=lambda d: d["platform"].get("variant") != variant)
    if exact:
        return exact[0]
    available = sorted({_platform_text(d["platform"]) for d in offered if isinstance(d.get("platform"), dict)})
    wanted = _platform_text({"os": os_, "architecture": arch, "variant": variant})
    raise MinirunError(f"no image for {wanted} in the manifest list (available: {', '.join(available) or 'none'})")


# -- the manifest of a stored image ------------------------------------------------------------


def image_manifest(store: Store, image: Image) -> bytes:
    """The OCI manifest of a stored image: its exact config blob, and its layers as the
    uncompressed tars the store rebuilds (digest = diff_id). Same image, same bytes."""
    config = store.images.raw_config(image.id)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": diff_id, "size": store.layers.tar_size(diff_id)}
            for diff_id in image.diff_ids
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


# -- names as docker writes them in archives ---------------------------------------------------


def full_name(name: str) -> str:
    """docker's normalized repository name: `busybox` -> `docker.io/library/busybox`."""
    first, sep, _ = name.partition("/")
    if sep and (first == "localhost" or "." in first or ":" in first):
        return name
    return "docker.io/" + (name if "/" in name else "library/" + name)


def familiar_name(name: str) -> str:
    """docker's short form of a repository name: `docker.io/library/busybox` -> `busybox`."""
    for prefix in ("docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            return name[len("library/") :] if name.startswith("library/") and name.count("/") == 1 else name
    return name
