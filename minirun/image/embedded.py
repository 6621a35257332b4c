"""Images minirun ships as recipes under `images/<name>/`, built into the store on first use,
the way docker pulls an image the first time a command names it."""

from __future__ import annotations

import os

from minirun import leanjson
from minirun.errors import MinirunError, NotFound
from minirun.store import Store
from minirun.store.images import Image
from minirun.store.reference import parse_reference

IMAGES_DIR = os.environ.get("MINIRUN_IMAGES") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "images"
)


def recipe_for(text: str) -> tuple[str, dict] | None:
    """The recipe dir and its recipe.json for a reference like `busybox` or `busybox:latest`."""
    try:
        ref = parse_reference(text)
    except MinirunError:
        return None
    if ref.domain is not None or ref.digest is not None:
        return None
    directory = os.path.join(IMAGES_DIR, ref.name)
    try:
        with open(os.path.join(directory, "recipe.json"), "rb") as f:
            recipe = leanjson.load(f)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if recipe.get("tag", "latest") != ref.tag:
        return None
    return directory, recipe


def find_image(store: Store, text: str) -> Image:
    """The image `text` names; an embedded recipe is built when the store lacks it."""
    try:
        return store.images.lookup(text)
    except NotFound:
        found = recipe_for(text)
        if found is None:
            raise
        return build(store, *found)


def build(store: Store, directory: str, recipe: dict) -> Image:
    import runpy  # here, with humanize: finding an image already built needs neither

    from minirun.timestamps import rfc3339_now

    if "rootfs" not in recipe:
        raise MinirunError(f"recipe {directory} has no rootfs builder")
    module = runpy.run_path(os.path.join(directory, recipe["rootfs"]))
    staged = store.unpack_written(module["write_rootfs"], f"building image {recipe['name']}")
    created = rfc3339_now()
    config = {
        "architecture": host_architecture(),
        "os": "linux",
        "created": created,
        "config": recipe.get("config", {}),
        "rootfs": {"type": "layers", "diff_ids": [staged.applied.diff_id]},  # type: ignore[union-attr]
        "history": [{"created": created, "created_by": "", "comment": recipe.get("comment", "")}],
    }
    ref = parse_reference(f"{recipe['name']}:{recipe.get('tag', 'latest')}")
    return store.commit_image([staged], config, ref)


def host_architecture() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)
