"""The library calls that fork Python (a create's volume copy, and what else forks), run in
processes started by exec (multiprocessing's "spawn"): the service's own process has threads,
and a fork from a process with threads may copy a lock some other thread held. A worker runs one
call at a time in its only thread, so the forks it makes are safe.

A call's MinirunError comes back as the same kind (NotFound, Conflict, UsageError...), so the
service answers it with docker's status code."""

from __future__ import annotations

import asyncio
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from minirun import errors

_WORKERS = 4
_pool: ProcessPoolExecutor | None = None


def _executor() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        import multiprocessing

        _pool = ProcessPoolExecutor(max_workers=_WORKERS, mp_context=multiprocessing.get_context("spawn"))
    return _pool


def shutdown() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None


async def call(target: str, *args: Any) -> Any:
    """`target` ("module:function") called with `args` in a worker; its result, or its error."""
    kind, value = await asyncio.wrap_future(_executor().submit(_run, target, args))
    if kind == "ok":
        return value
    error_type, message = value
    raise getattr(errors, error_type, errors.MinirunError)(message)


def _run(target: str, args: tuple) -> tuple[str, Any]:
    """In the worker: the call, its error as (kind name, message)."""
    import importlib

    module, _, name = target.partition(":")
    try:
        return "ok", getattr(importlib.import_module(module), name)(*args)
    except errors.MinirunError as exc:
        kind = next(c.__name__ for c in type(exc).__mro__ if c.__module__ == errors.__name__)
        return "error", (kind, exc.message)


# -- the calls -------------------------------------------------------------------------------------


def create_container(store_root: str, values: dict) -> str:
    """A create request's options (containerspec.namespace's values): the container's record, as
    `minirun create` makes it (frontend/create.py); its id."""
    from minirun.api.containerspec import Namespace
    from minirun.containers.container import Containers
    from minirun.containers.foreground import host_resolv_conf
    from minirun.frontend import runflags
    from minirun.frontend.create import container_config, create_record
    from minirun.frontend.runoptions import run_options
    from minirun.store import Store

    # the request's environment is the request's alone: a bare `K` takes no value from ours
    opts = run_options(Namespace(**values), environ={})
    store = Store(store_root)
    config, mount_plan, image = container_config(store, opts)
    # no guard (containers/guard.py) as `create` forks: the service outlives the request, and a
    # record is whole once written (Containers.create), or not there
    resolv_conf = runflags.resolv_conf(opts.flags, host_resolv_conf())
    container = create_record(store, Containers(store), config, mount_plan, image, resolv_conf)
    return container.id


def stat_path(store_root: str, container_id: str, path: str) -> dict:
    """docker's stat of `path` in the container (containers/copy.py): its view is mounted by a
    forked child."""
    from minirun.containers.container import Containers
    from minirun.containers.copy import stat_path as stat_in_container
    from minirun.store import Store

    containers = Containers(Store(store_root))
    return stat_in_container(containers, containers.find(container_id), path)
