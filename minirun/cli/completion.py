"""Shell completion: `minirun completion bash` prints a script for bash; its function asks
`minirun __complete WORD...` (the words typed so far, the last one unfinished) for candidates:
verbs, a group's subcommands, a verb's options (from its own parser: they are written once), and
the names of containers or images where a verb takes them."""

from __future__ import annotations

import sys

BASH = r"""# minirun's bash completion: eval "$(minirun completion bash)", or put it in
# /etc/bash_completion.d/minirun
_minirun() {
    local IFS=$'\n'
    COMPREPLY=($(minirun __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _minirun minirun
"""

# which verbs take a container, which an image (as their first operand)
CONTAINER_VERBS = {
    "start", "stop", "kill", "rm", "wait", "logs", "rename", "top", "commit", "export", "exec", "diff", "port",
    "stats", "update", "inspect", "pause", "unpause",
}  # fmt: skip
IMAGE_VERBS = {"run", "rmi", "tag", "history", "save", "push", "inspect"}


def completion_command(argv: list[str], root: str | None) -> int:
    from minirun.cli.leanparser import Parser

    p = Parser(
        prog="minirun completion", usage="minirun completion bash", description="Print a shell completion script."
    )
    p.add_argument("shell", choices=["bash"], metavar="SHELL")
    p.parse_args(argv)
    sys.stdout.write(BASH)
    return 0


def complete_command(argv: list[str], root: str | None) -> int:
    """Candidates for the last word of argv, one a line; never an error (a shell is asking)."""
    try:
        words = candidates(argv, root)
    except Exception:
        words = []
    current = argv[-1] if argv else ""
    sys.stdout.write("".join(w + "\n" for w in sorted(set(words)) if w.startswith(current)))
    return 0


def candidates(argv: list[str], root: str | None) -> list[str]:
    from minirun.cli.commands import COMMANDS, GLOBAL_OPTIONS, GROUPS
    from minirun.cli.main import split_global_options

    given_root, _, _, verb_at = split_global_options(argv[:-1])
    root = given_root or root
    words = list(argv[verb_at:-1])
    current = argv[-1] if argv else ""
    if not words:
        if current.startswith("-"):
            return [name.split()[0] for names, _ in GLOBAL_OPTIONS for name in names.split(", ")]
        return [name for name in COMMANDS if not name.startswith("_")]
    verb, rest = words[0], words[1:]
    if verb in GROUPS:
        if not rest:
            return list(GROUPS[verb])
        target = GROUPS[verb].get(rest[0])
        if target is None:
            return []
        verb, rest = target[0], rest[1:]
    if current.startswith("-"):
        return options_of(verb)
    if rest:  # only the first operand is completed
        return []
    if verb in CONTAINER_VERBS or verb in IMAGE_VERBS:
        return names_for(verb, root)
    return []


def options_of(verb: str) -> list[str]:
    from minirun.cli.commands import COMMANDS

    command = COMMANDS.get(verb)
    if command is None:
        return []
    module_name, _, attribute = command.target.partition(":")
    if command.lean:
        if command.options is None:
            return []
        module_name, _, function = command.options.partition(":")
        parser = getattr(__import__(module_name, fromlist=[function]), function)()
        return parser.option_names()
    from typer.main import get_command

    app = getattr(__import__(module_name, fromlist=[attribute]), attribute)
    click_command = get_command(app)
    sub = click_command.commands.get(verb) if hasattr(click_command, "commands") else None
    if sub is None:
        return []
    return [name for param in sub.params for name in (*param.opts, *param.secondary_opts) if name.startswith("-")]


def names_for(verb: str, root: str | None) -> list[str]:
    from minirun.store import Store

    store = Store(root)
    names: list[str] = []
    if verb in CONTAINER_VERBS:
        from minirun.containers.container import Containers

        names += [c.name for c in Containers(store).all()]
    if verb in IMAGE_VERBS:
        names += sorted(store.images.tags())
    return names
