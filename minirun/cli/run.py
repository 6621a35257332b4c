"""`run` in the foreground: resolve the image, record the container, start PID 1, wait, clean up.

Kept off typer and rich (see runargs.py): this is the path the start benchmark times. What a new
container is made of is frontend/create.py's, which the Engine API's create shares.
"""

from __future__ import annotations

import os

from minirun.cli.runargs import parse_run_args
from minirun.containers.foreground import host_resolv_conf, run_foreground
from minirun.containers.removal import discard
from minirun.errors import UsageError
from minirun.frontend.create import container_config, create_record
from minirun.store import Store


def run_command(argv: list[str], root: str | None, create_only: bool = False) -> int:
    """`run`; with `create_only` (cli/create.py), `create`: the record made and its id printed."""
    from minirun.containers.container import Containers
    from minirun.frontend import runflags
    from minirun.store.initlayer import init_layer_link

    opts = parse_run_args(argv, verb="create" if create_only else "run")
    if opts.tty and opts.interactive and not opts.detach and not create_only and not os.isatty(0):
        # docker's check, before anything is created: raw mode needs a terminal to put raw
        raise UsageError("the input device is not a TTY")
    if opts.flags.runtime:
        from minirun.containers.ociruntime import check_runtime_options

        attached = opts.tty and opts.interactive
        check_runtime_options(opts.flags.runtime, opts.detach, attached, create_only, bool(opts.restart_policy))
    store = Store(root)
    config, mount_plan, image = container_config(store, opts)
    container_id = config.id
    containers = Containers(store)
    init = init_layer_link(store)
    from minirun.containers import guard

    # from before the record exists to after --rm: a killed client leaves nothing behind (guard.py)
    watch = guard.start(store.root, container_id)
    try:
        cidfile = runflags.open_cidfile(opts.flags.cidfile)
        try:
            resolv_conf = runflags.resolv_conf(opts.flags, host_resolv_conf())
            container = create_record(store, containers, config, mount_plan, image, resolv_conf)
        except BaseException:
            runflags.discard_cidfile(cidfile, opts.flags.cidfile)
            raise
        runflags.write_cidfile(cidfile, container.id)
        if create_only:
            print(container.id)
            return 0
        if opts.detach:
            return _detach(store, containers, container, on_spawned=watch.done)
        if opts.tty and opts.interactive:  # through a monitor, so the detach keys can leave it running
            from minirun.containers.attachclient import parse_detach_keys, run_attached

            keys = parse_detach_keys(opts.detach_keys)
            return run_attached(containers, container, watch.done, keys, opts.sig_proxy)
        try:
            if container.config.runtime:  # an OCI runtime from a bundle, instead of PID 1 in-process
                from minirun.containers.ociruntime import run_with_runtime

                code = run_with_runtime(store, containers, container, image, init, watch.pid)
            else:
                code = run_foreground(store, containers, container, image, init, watch.pid)
            if opts.restart_policy:  # docker's daemon restarts it after the client returned: a monitor does
                from minirun.containers.restartpolicy import hand_over

                hand_over(store.root, containers, container, code)
            return code
        finally:
            if opts.rm:
                discard(containers, container)
    finally:
        watch.done(reap=False)  # the CLI exits next (main.py)


def _detach(store, containers, container, on_spawned=None) -> int:
    """docker run -d: the monitor owns the container from here; print the full id once it runs."""
    from minirun.containers.detach import spawn_monitor

    size = (24, 80)
    if container.config.tty:  # the container's terminal starts as big as ours (attachclient.py)
        from minirun.containers.attachclient import console_size

        size = console_size(True)
    try:
        spawn_monitor(store.root, container.id, on_spawned, console_size=size)
    except BaseException:
        if container.config.auto_remove:
            discard(containers, container)  # the monitor may have removed it already
        raise
    print(container.id)
    return 0
