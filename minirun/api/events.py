"""`GET /events`: the store's event log (minirun/events.py) as docker streams it: the events
since `since` (none without it), then each new one as it is recorded, until `until` or the
client leaves; `filters` as `events --filter` reads them (frontend/filters.py)."""

from __future__ import annotations

import json
import threading
import time

from aiohttp import web

from minirun.api import streams
from minirun.api.common import STORE_ROOT, blocking, filters


def _stamp(request: web.Request, name: str, now: int) -> int | None:
    from minirun.humanize import parse_timestamp

    value = request.query.get(name, "")
    return parse_timestamp(value, now) if value else None


async def events(request: web.Request) -> web.StreamResponse:
    from minirun import events as log
    from minirun.frontend.filters import EVENT_KEYS, Filters, event_filter

    keep = event_filter(Filters(filters(request), EVENT_KEYS))
    now = time.time_ns()
    start, stop = _stamp(request, "since", now), _stamp(request, "until", now)
    root = request.app[STORE_ROOT]
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    shown = now  # without since: only what happens from now on
    try:
        if start is not None:
            for event in await blocking(log.read, root):
                if start <= event["timeNano"] and (stop is None or event["timeNano"] < stop):
                    shown = max(shown, event["timeNano"])
                    if keep(event):
                        await response.write((json.dumps(event) + "\n").encode())
        if stop is None or stop > time.time_ns():
            stopped = threading.Event()
            try:
                async for event in streams.items(log.follow(root, shown, stop, stopped=stopped.is_set), stopped):
                    if keep(event):
                        await response.write((json.dumps(event) + "\n").encode())
            finally:
                stopped.set()
        await response.write_eof()
    except ConnectionError:
        pass  # the client left
    return response


async def df(request: web.Request) -> web.Response:
    from minirun.api.common import as_json, store

    return as_json(await blocking(disk_usage_document, store(request)))


def disk_usage_document(store) -> dict:
    """docker's /system/df: LayersSize, Images, Containers, Volumes (each with its usage)."""
    from minirun.api.containers import summary
    from minirun.containers.diskusage import disk_usage
    from minirun.humanize import epoch_seconds

    usage = disk_usage(store)
    images: dict[str, dict] = {}
    for row in usage.images:
        document = images.setdefault(
            row.image.id,
            {
                "Id": row.image.id,
                "ParentId": "",
                "RepoTags": [],
                "RepoDigests": store.images.repo_digests(row.image.id),
                "Created": int(epoch_seconds(row.image.created)) if row.image.created else 0,
                "Size": row.size,
                "SharedSize": row.shared_size,
                "VirtualSize": row.size,
                "Labels": row.image.labels,
                "Containers": row.containers,
            },
        )
        if row.repository != "<none>":
            document["RepoTags"].append(f"{row.repository}:{row.tag}")
    containers = []
    for used in usage.containers:
        listed = summary(store, used.container)
        listed.update(SizeRw=used.size, SizeRootFs=used.size)
        containers.append(listed)
    volumes = []
    from minirun.store.volumes import VolumeStore

    known = {v.name: v for v in VolumeStore(store.root).all()}
    for volume_usage in usage.volumes:
        volume = known.get(volume_usage.name)
        if volume is not None:
            usage_data = {"Size": volume_usage.size, "RefCount": volume_usage.links}
            volumes.append({**volume.to_json(), "UsageData": usage_data})
    return {
        "LayersSize": usage.layers_size,
        "Images": list(images.values()),
        "Containers": containers,
        "Volumes": volumes,
        "BuildCache": [],
    }


ROUTES = [web.get("/events", events), web.get("/system/df", df)]
