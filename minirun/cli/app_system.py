"""`version` (and `--version`) and `info` on typer: docker's layout of what minirun is and where
it runs; `--format json` gives the documents as they are."""

from __future__ import annotations

import json

import typer

from minirun.cli.typerapp import new_app, open_store
from minirun.errors import UsageError

app = new_app()


def _formatted(format_: str | None, document: dict) -> bool:
    """--format json or a Go template, done here; False: the caller prints its text form."""
    if format_ is None:
        return False
    if format_.strip() == "json":
        print(json.dumps(document))
        return True
    from minirun.cli.formatting import write_one_each

    return write_one_each(format_, [document])


@app.command("version")
def version(format_: str | None = typer.Option(None, "-f", "--format", help="'json' or a Go TEMPLATE.")) -> None:
    """Show the minirun version information."""
    from minirun.frontend.systeminfo import version_document

    document = version_document()
    if _formatted(format_, document):
        return
    client, server = document["Client"], document["Server"]
    print("Client:")
    _rows(
        [
            ("Version", client["Version"]),
            ("API version", client["ApiVersion"] or "none (no Engine API yet)"),
            ("Python version", client["PythonVersion"]),
            ("OS/Arch", f"{client['Os']}/{client['Arch']}"),
        ],
        width=18,
    )
    print("\nServer: minirun (no daemon: this same program)")
    print(" Engine:")
    _rows([("Version", server["Version"]), ("Kernel version", server["KernelVersion"])], width=17, indent=2)


@app.command("info")
def info(format_: str | None = typer.Option(None, "-f", "--format", help="'json' or a Go TEMPLATE.")) -> None:
    """Display system-wide information."""
    from minirun.frontend.systeminfo import info_document
    from minirun.humanize import bytes_size

    document = info_document(open_store())
    if _formatted(format_, document):
        return
    d = document
    print("Server:")
    print(f" Containers: {d['Containers']}")
    print(
        f"  Running: {d['ContainersRunning']}\n  Paused: {d['ContainersPaused']}\n  Stopped: {d['ContainersStopped']}"
    )
    print(f" Images: {d['Images']}")
    print(f" Server Version: {d['ServerVersion']}")
    print(f" Storage Driver: {d['Driver']}")
    for key, value in d["DriverStatus"]:
        print(f"  {key}: {value}")
    print(f" Logging Driver: {d['LoggingDriver']}")
    print(f" Cgroup Driver: {d['CgroupDriver']}\n Cgroup Version: {d['CgroupVersion']}")
    print(f" Default Runtime: {d['DefaultRuntime']}")
    if d["SecurityOptions"]:
        print(" Security Options:")
        for option in d["SecurityOptions"]:
            fields = dict(part.split("=", 1) for part in option.split(","))
            print(f"  {fields.pop('name')}")
            for key, value in fields.items():
                print(f"   {key.capitalize()}: {value}")
    print(f" Kernel Version: {d['KernelVersion']}")
    print(f" Operating System: {d['OperatingSystem']}\n OSType: {d['OSType']}\n Architecture: {d['Architecture']}")
    print(f" CPUs: {d['NCPU']}\n Total Memory: {bytes_size(d['MemTotal'])}")
    print(f" Name: {d['Name']}\n Docker Root Dir: {d['DockerRootDir']}\n Debug Mode: false")


def _rows(rows: list[tuple[str, str]], width: int, indent: int = 1) -> None:
    for key, value in rows:
        print(f"{' ' * indent}{key + ':':<{width}}{value}")


@app.command("events")
def events_(
    since: str | None = typer.Option(None, "--since", help="Show all events created since timestamp (e.g. 42m)."),
    until: str | None = typer.Option(None, "--until", help="Stream events until this timestamp."),
    filter_: list[str] = typer.Option([], "-f", "--filter", help="Filter output based on conditions provided."),
    format_: str | None = typer.Option(None, "--format", help="'json' or a Go TEMPLATE."),
) -> None:
    """Get real time events: those since --since, then new ones until --until (or ^C)."""
    import time

    from minirun import events
    from minirun.frontend.filters import EVENT_KEYS, Filters, event_filter
    from minirun.humanize import parse_timestamp

    keep = event_filter(Filters(filter_, EVENT_KEYS))
    template = None
    if format_ is not None and format_.strip() != "json":
        from minirun.cli.gotemplate import compile, parse_format

        template = compile(parse_format(format_)[1])
    now = time.time_ns()

    def stamp(option: str, value: str | None) -> int | None:
        try:
            return parse_timestamp(value, now) if value else None
        except UsageError as exc:
            raise UsageError(f"{option}: {exc.message}") from None

    start, stop = stamp("--since", since), stamp("--until", until)
    store = open_store()
    shown = now  # without --since: only what happens from now on, as docker
    if start is not None:
        for event in events.read(store.root):
            if start <= event["timeNano"] and (stop is None or event["timeNano"] < stop):
                shown = max(shown, event["timeNano"])  # the follow below starts after it
                if keep(event):
                    _print_event(event, format_, template)
    if stop is not None and stop <= time.time_ns():
        return
    for event in events.follow(store.root, shown, stop):
        if keep(event):
            _print_event(event, format_, template)


def _print_event(event: dict, format_: str | None, template) -> None:
    from minirun.timestamps import rfc3339_ns

    if template is not None:
        from minirun.cli.formatting import as_go_values

        print(template.execute(as_go_values(event)), flush=True)
        return
    if format_ is not None:  # json
        print(json.dumps(event), flush=True)
        return
    actor = event.get("Actor") or {}
    attributes = ", ".join(f"{k}={v}" for k, v in sorted((actor.get("Attributes") or {}).items()))
    line = f"{rfc3339_ns(event['timeNano'])} {event.get('Type')} {event.get('Action')} {actor.get('ID', '')}"
    print(line + (f" ({attributes})" if attributes else ""), flush=True)
