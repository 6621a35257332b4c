"""The command table: every verb, where it lives and what it does, in one place. Nothing here
imports a verb: main.py loads only the module of the verb it runs, so `ps` never pays for typer
and `rmi` never pays for build or pull.

A verb is "lean" (a function `(argv, root) -> int` with its own argparse parser: the verbs whose
start time is benchmarked, or that later issues make hot) or "typer" (a typer app in the module
named, which holds this verb among others; typer parses its options). The budget is kept by tests,
not comments: a lean verb never imports typer, rich, pydantic or pyroute2 (tests/e2e/
test_hot_verbs.py), a typer verb imports typer and none of the others (tests/e2e/test_one_cli.py);
scripts/bench_cli.py times both kinds."""

from __future__ import annotations


class Command:
    """`target`: "module:function" for a lean verb, "module:app" for a typer app. A plain class,
    not a NamedTuple: typing costs ~6 ms on the paths the benchmarks time."""

    __slots__ = ("target", "summary", "lean", "options")

    def __init__(self, target: str, summary: str, lean: bool = False, options: str | None = None) -> None:
        # options: a lean verb's "module:function" returning its parser (shell completion reads it)
        self.target, self.summary, self.lean, self.options = target, summary, lean, options


COMMANDS: dict[str, Command] = {
    # containers
    "run": Command(
        "minirun.cli.run:run_command",
        "Create and run a new container from an image",
        lean=True,
        options="minirun.cli.runargs:parser",
    ),
    "exec": Command(
        "minirun.cli.execcmd:exec_command",
        "Execute a command in a running container",
        lean=True,
        options="minirun.cli.execargs:parser",
    ),
    "ps": Command("minirun.cli.ps:ps_command", "List containers", lean=True, options="minirun.cli.ps:parser"),
    "diff": Command(
        "minirun.cli.diffcmd:diff_command",
        "Inspect changes to files or directories on a container's filesystem",
        lean=True,
        options="minirun.cli.diffcmd:parser",
    ),
    "create": Command(
        "minirun.cli.create:create_command",
        "Create a new container",
        lean=True,
        options="minirun.cli.create:parser",
    ),
    "attach": Command(
        "minirun.cli.attachcmd:attach_command",
        "Attach local standard input, output, and error streams to a running container",
        lean=True,
        options="minirun.cli.attachcmd:parser",
    ),
    "start": Command("minirun.cli.app_containers:app", "Start one or more stopped containers"),
    "stop": Command("minirun.cli.app_containers:app", "Stop one or more running containers"),
    "kill": Command("minirun.cli.app_containers:app", "Kill one or more running containers"),
    "restart": Command("minirun.cli.app_containers:app", "Restart one or more containers"),
    "rm": Command("minirun.cli.app_containers:app", "Remove one or more containers"),
    "wait": Command("minirun.cli.app_containers:app", "Block until containers stop, then print their exit codes"),
    "logs": Command("minirun.cli.app_containers:app", "Fetch the logs of a container"),
    "rename": Command("minirun.cli.app_containers:app", "Rename a container"),
    "top": Command("minirun.cli.app_containers:app", "Display the running processes of a container"),
    "commit": Command("minirun.cli.app_containers:app", "Create a new image from a container's changes"),
    "export": Command("minirun.cli.app_containers:app", "Export a container's filesystem as a tar archive"),
    "container": Command("minirun.cli.app_containers:app", "Manage containers"),
    "cp": Command("minirun.cli.app_copy:app", "Copy files/folders between a container and the local filesystem"),
    "pause": Command("minirun.cli.app_containers:app", "Pause all processes within one or more containers"),
    "unpause": Command("minirun.cli.app_containers:app", "Unpause all processes within one or more containers"),
    "update": Command("minirun.cli.app_resources:app", "Update the resource limits of one or more containers"),
    "stats": Command("minirun.cli.app_resources:app", "Display a live stream of container resource usage"),
    "port": Command("minirun.cli.app_network:app", "List port mappings of a container"),
    "trace": Command("minirun.cli.app_inspect_fs:app", "Show how the merged view answers for a path, layer by layer"),
    # images
    "images": Command(
        "minirun.cli.imagescmd:images_command", "List images", lean=True, options="minirun.cli.imagescmd:parser"
    ),
    "history": Command("minirun.cli.app_images:app", "Show the history of an image"),
    "rmi": Command("minirun.cli.app_images:app", "Remove one or more images"),
    "tag": Command("minirun.cli.app_images:app", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "inspect": Command("minirun.cli.app_images:app", "Return low-level information on containers or images"),
    "import": Command(
        "minirun.cli.importcmd:import_command",
        "Import the contents from a tarball to create an image",
        lean=True,
        options="minirun.cli.importcmd:parser",
    ),
    "build": Command(
        "minirun.cli.buildcmd:build_command",
        "Build an image from a Containerfile or Dockerfile",
        lean=True,
        options="minirun.cli.buildcmd:parser",
    ),
    "load": Command(
        "minirun.cli.loadcmd:load_command",
        "Load images from a tar archive or STDIN",
        lean=True,
        options="minirun.cli.loadcmd:parser",
    ),
    "save": Command("minirun.cli.app_archive:app", "Save one or more images to a tar archive"),
    "pull": Command("minirun.cli.app_registry:app", "Download an image from a registry"),
    "push": Command("minirun.cli.app_registry:app", "Upload an image to a registry"),
    "login": Command("minirun.cli.app_registry:app", "Log in to a registry"),
    "logout": Command("minirun.cli.app_registry:app", "Log out from a registry"),
    "image": Command("minirun.cli.app_inspect_fs:app", "Manage images"),
    # the rest
    "network": Command("minirun.cli.app_network:app", "Manage networks"),
    "volume": Command("minirun.cli.app_volumes:app", "Manage volumes"),
    "system": Command("minirun.cli.app_inspect_fs:app", "Manage minirun"),
    "info": Command("minirun.cli.app_system:app", "Display system-wide information"),
    "version": Command("minirun.cli.app_system:app", "Show the minirun version information"),
    "events": Command("minirun.cli.app_system:app", "Get real time events from the store"),
    "completion": Command(
        "minirun.cli.completion:completion_command",
        "Print a shell completion script (bash)",
        lean=True,
    ),
    "__complete": Command("minirun.cli.completion:complete_command", "", lean=True),  # the script's helper
}

# docker's management groups: `minirun container ls` is `minirun ps`, `image rm` is `rmi`, `image inspect`
# is `inspect --type image`. A subcommand named None here is the group's own (a typer subcommand of
# the module COMMANDS names for the group: `container prune`, `image prune`, `system df`, ...).
ALIASES_HIDDEN = {"list", "ps", "remove"}  # listed by docker as aliases, not lines of the group's help
GROUPS: dict[str, dict[str, tuple[str, ...] | None]] = {
    "container": {
        "ls": ("ps",),
        "list": ("ps",),
        "ps": ("ps",),
        "run": ("run",),
        "create": ("create",),
        "attach": ("attach",),
        "exec": ("exec",),
        "start": ("start",),
        "stop": ("stop",),
        "kill": ("kill",),
        "restart": ("restart",),
        "rm": ("rm",),
        "remove": ("rm",),
        "wait": ("wait",),
        "logs": ("logs",),
        "rename": ("rename",),
        "top": ("top",),
        "diff": ("diff",),
        "commit": ("commit",),
        "export": ("export",),
        "inspect": ("inspect", "--type", "container"),
        "port": ("port",),
        "stats": ("stats",),
        "update": ("update",),
        "prune": None,
        "cp": ("cp",),
        "pause": ("pause",),
        "unpause": ("unpause",),
    },
    "image": {
        "ls": ("images",),
        "list": ("images",),
        "rm": ("rmi",),
        "remove": ("rmi",),
        "inspect": ("inspect", "--type", "image"),
        "history": ("history",),
        "tag": ("tag",),
        "import": ("import",),
        "build": ("build",),
        "load": ("load",),
        "save": ("save",),
        "pull": ("pull",),
        "push": ("push",),
        "prune": None,
    },
    "system": {
        "df": None,
        "prune": None,
        "check": None,
        "info": ("info",),
        "events": ("events",),
        "boot": None,
        "shutdown": None,
        "service": None,
    },
}
GROUP_SUMMARIES = {  # the group's own subcommands
    ("container", "prune"): "Remove all stopped containers",
    ("image", "prune"): "Remove unused images",
    ("system", "df"): "Show minirun disk usage",
    ("system", "prune"): "Remove unused data",
    ("system", "check"): "Check the store and what minirun keeps on the host",
    ("system", "boot"): "Start the containers a restart policy brings back after a reboot",
    ("system", "shutdown"): "Stop every running container, to be started again by system boot",
    ("system", "service"): "Serve the Docker Engine API on a unix socket",
}


def resolve_group(group: str, argv: list[str]) -> tuple[str, list[str]] | None:
    """`container ls -a` -> ("ps", ["-a"]); None when the group's own app answers (its own
    subcommands, its help, a bad subcommand)."""
    if not argv or argv[0] not in GROUPS[group]:
        return None
    target = GROUPS[group][argv[0]]
    if target is None:
        return None
    return target[0], [*target[1:], *argv[1:]]


def group_help(group: str) -> str:
    rows = [
        (sub, COMMANDS[target[0]].summary if target else GROUP_SUMMARIES[(group, sub)])
        for sub, target in sorted(GROUPS[group].items())
        if sub not in ALIASES_HIDDEN
    ]
    from minirun.cli.leanparser import definition_list

    return (
        f"Usage: minirun {group} COMMAND [ARGS]...\n\n  {COMMANDS[group].summary}\n\n"
        "Options:\n"
        + definition_list([("-h, --help", "Show this message and exit.")])
        + "\nCommands:\n"
        + definition_list(rows)
    )


GLOBAL_OPTIONS = (
    ("--root DIR", "Store directory (default $MINIRUN_ROOT or /var/lib/minirun)"),
    ("--debug", "Show tracebacks of internal errors"),
    ("-v, --version", "Print version information and quit."),
    ("-h, --help", "Show this message and exit."),
)


def top_help() -> str:
    """`minirun --help`, in the layout every verb's help has (leanparser.py, typer's plain help)."""
    from minirun.cli.leanparser import definition_list

    return (
        "Usage: minirun [OPTIONS] COMMAND [ARGS]...\n\n"
        "  A container runtime on kernel overlayfs, with docker's verbs.\n\n"
        "Options:\n"
        + definition_list(GLOBAL_OPTIONS)
        + "\nCommands:\n"
        + definition_list(sorted((name, c.summary) for name, c in COMMANDS.items() if not name.startswith("_")))
    )
