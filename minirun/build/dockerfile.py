"""A Dockerfile read, checked and planned before anything runs: its instructions (continuations
joined, comments dropped, flags split off), its build stages (`FROM ... AS name`), and which of
them a build needs for its target.

Stages the target does not need (neither its FROM nor a `COPY --from` leads to them, directly or
through another stage) are skipped, as BuildKit does; the classic builder ran them all.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

from minirun.errors import NotFound, UsageError
from minirun.image.instructions import HEALTHCHECK_FLAGS, parse_healthcheck, parse_json_or_shell, split_instruction
from minirun.records import Record

KNOWN_INSTRUCTIONS = frozenset(
    {
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "MAINTAINER",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
    }
)
_UNSUPPORTED = frozenset({"ONBUILD"})
# Flags each instruction takes (`--name=value` words before the arguments); those docker
# knows but minirun does not do are refused by name rather than as unknown.
_FLAGS = {
    "FROM": {"platform"},
    "RUN": {"mount", "network", "security"},
    "COPY": {"chown", "from", "chmod", "link", "parents", "exclude"},
    "ADD": {"chown", "chmod", "checksum", "keep-git-dir", "link", "exclude"},
    "HEALTHCHECK": set(HEALTHCHECK_FLAGS),
}
_SUPPORTED_FLAGS = {"COPY": {"chown", "from"}, "ADD": {"chown"}, "HEALTHCHECK": set(HEALTHCHECK_FLAGS)}
# docker's builtinAllowedBuildArgs: usable without an ARG, never in history unless declared.
BUILTIN_ARGS = frozenset(
    {
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "FTP_PROXY",
        "ftp_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    }
)
_CONTINUATION = re.compile(r"\\[ \t]*$")


# -- parsing ------------------------------------------------------------------------------
class Instruction(Record):
    keyword: str  # upper-cased
    args: str  # after the keyword and its flags
    text: str  # the instruction on one line, as `Step N/M : ...` shows it
    line: int
    flags: tuple[tuple[str, str], ...]
    DEFAULTS = {"flags": ()}

    def flag(self, name: str) -> str | None:
        return next((value for key, value in self.flags if key == name), None)


DOCKERFILE_LIMIT = 4 << 20  # no real Dockerfile comes near: an endless -f /dev/zero is refused at once


def parse_dockerfile(text: str, name: str = "Containerfile") -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped, checked for what can
    be checked before anything runs (unknown instructions, flags, argument counts, FROM first)."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also inside a continuation, as docker drops them there
        if not parts:
            start, raw = number, raw.lstrip()
        match = _CONTINUATION.search(raw)
        if match:
            # docker keeps the text before the backslash and the next line's indent as they are
            parts.append(raw[: match.start()])
            continue
        parts.append(raw)
        instructions.append(_instruction("".join(parts), start))
        parts = []
    if parts and "".join(parts).strip():
        instructions.append(_instruction("".join(parts), start))
    if not instructions:
        raise UsageError(f"the Dockerfile ({name}) cannot be empty")
    first = next((i for i in instructions if i.keyword != "ARG"), None)
    if first is None or first.keyword != "FROM":
        line = first.line if first is not None else instructions[-1].line
        raise UsageError(f"Dockerfile parse error line {line}: no build stage in current context")
    return instructions


def _instruction(line: str, number: int) -> Instruction:
    def fail(message: str) -> UsageError:
        return UsageError(f"Dockerfile parse error line {number}: {message}")

    keyword, args = split_instruction(line)
    if keyword not in KNOWN_INSTRUCTIONS:
        raise fail(f"unknown instruction: {keyword}")
    if keyword in _UNSUPPORTED:
        raise fail(f"{keyword} is not supported by minirun build")
    flags: list[tuple[str, str]] = []
    if keyword in _FLAGS:
        while args.startswith("--"):
            word, _, rest = args.partition(" ")
            name, eq, value = word[2:].partition("=")
            if name not in _FLAGS[keyword]:
                raise fail(f"Unknown flag: {name}")
            if name not in _SUPPORTED_FLAGS.get(keyword, ()):
                raise fail(f"{keyword} --{name} is not supported by minirun build")
            if not eq:
                raise fail(f"missing a value on flag: {name}")
            flags.append((name, value))
            args = rest.strip()
    if keyword == "FROM" and len(args.split()) not in (1, 3):
        raise fail("FROM requires either one or three arguments")
    if keyword == "FROM" and len(args.split()) == 3 and args.split()[1].lower() != "as":
        raise fail("FROM requires either one or three arguments")
    if keyword in ("COPY", "ADD"):
        words, is_json = parse_json_or_shell(args)
        if len(words if is_json else args.split()) < 2:
            raise fail(
                f"{keyword} requires at least two arguments, but only one was provided. "
                "Destination could not be determined."
            )
    elif keyword in ("WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER") and not args:
        raise fail(f"{keyword} requires exactly one argument")
    elif not args:
        raise fail(f"{keyword} requires at least one argument")
    try:
        if keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "VOLUME", "COPY", "ADD"):
            parse_json_or_shell(args)  # a JSON array of non-strings fails now, not at its step
        if keyword == "HEALTHCHECK":
            parse_healthcheck(args, dict(flags))
    except UsageError as exc:
        raise fail(exc.message) from None
    return Instruction(keyword, args, line.strip(), number, tuple(flags))


def find_dockerfile(context: str, file: str | None, resolve: Callable[[str], str] | None = None) -> str:
    """-f FILE as given (relative to the current dir, as docker), else CONTEXT/Containerfile,
    else CONTEXT/Dockerfile. `resolve`: how a path is read in a context that was sent (its
    links stay inside it)."""
    if not os.path.isdir(context):
        raise NotFound(f'unable to prepare context: path "{context}" not found')
    if file:
        path = resolve(file) if resolve else file
        if not os.path.isfile(path):
            raise NotFound(f"unable to prepare context: the Dockerfile ({file}) does not exist")
        return path
    for name in ("Containerfile", "Dockerfile"):
        path = os.path.join(context, name)
        path = resolve(path) if resolve else path
        if os.path.isfile(path):
            return path
    raise NotFound(f"unable to prepare context: no Containerfile or Dockerfile in {context}")


def parse_build_args(items: list[str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """--build-arg K=V, or K alone to take K from the environment (skipped when unset), as docker."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    args: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid build argument: {item!r}")
        if eq:
            args[key] = value
        elif key in env:
            args[key] = env[key]
    return args


# -- stages ----------------------------------------------------------------------------------
_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*", re.ASCII)


class Stage(Record):
    index: int
    name: str  # the `AS` name, lower-cased; "" without one
    base: str  # what FROM names, its ARGs expanded: "scratch", an earlier stage or an image
    base_stage: int | None  # the earlier stage FROM names, if it names one
    instructions: list[Instruction]  # FROM first
    uses: set[int]  # the earlier stages it needs: its FROM and its COPY --from


class BuildPlan(Record):
    global_args: list[Instruction]  # the ARGs before the first FROM
    stages: list[Stage]
    target: int  # --target's stage, else the last
    needed: list[int]  # the stages the target needs, itself included, in file order

    def steps(self) -> int:
        return len(self.global_args) + sum(len(self.stages[i].instructions) for i in self.needed)


def split_global_args(instructions: list[Instruction]) -> tuple[list[Instruction], list[Instruction]]:
    """The ARGs before the first FROM (usable in every FROM), and the rest."""
    first = next(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    return instructions[:first], instructions[first:]


def plan_stages(
    global_args: list[Instruction], rest: list[Instruction], expand: Callable[[str], str], target: str = ""
) -> BuildPlan:
    """Stages and what the target needs. `expand` substitutes the global ARGs (in FROM and in
    `COPY --from`); `rest` starts with a FROM (parse_dockerfile checked)."""
    stages: list[Stage] = []
    for ins in rest:
        if ins.keyword == "FROM":
            stages.append(_stage(len(stages), ins, stages, expand))
        else:
            stages[-1].instructions.append(ins)
    for stage in stages:  # every name is known now: a later stage named is an error, not an image
        for ins in stage.instructions:
            value = ins.flag("from") if ins.keyword == "COPY" else None
            source = stage_for(stages, expand(value), stage.index) if value is not None else None
            if source is not None:
                stage.uses.add(source)
    chosen = len(stages) - 1
    if target:
        found = [s.index for s in stages if s.name == target.lower()]
        if not found:
            raise UsageError(f'target stage "{target}" could not be found')
        chosen = found[0]
    needed: set[int] = set()
    pending = [chosen]
    while pending:
        index = pending.pop()
        if index not in needed:
            needed.add(index)
            pending.extend(stages[index].uses)
    return BuildPlan(global_args, stages, chosen, sorted(needed))


def _stage(index: int, ins: Instruction, earlier: list[Stage], expand: Callable[[str], str]) -> Stage:
    words = ins.args.split()
    base = expand(words[0])
    if not base:
        raise UsageError(f"base name ({words[0]}) should not be blank")
    name = words[2].lower() if len(words) == 3 else ""
    if name and not _STAGE_NAME.fullmatch(name):
        raise UsageError(
            f'invalid name for build stage: "{words[2]}", name can\'t start with a number or contain symbols'
        )
    if name and any(s.name == name for s in earlier):
        raise UsageError(f'duplicate stage name "{name}"')
    base_stage = next((s.index for s in earlier if s.name and s.name == base.lower()), None)
    uses = {base_stage} if base_stage is not None else set()
    return Stage(index, name, base, base_stage, [ins], uses)


def stage_for(stages: list[Stage], value: str, current: int) -> int | None:
    """The stage `COPY --from=value` names: an earlier stage by name or by index; None when it
    names an image. A stage cannot copy from itself or from one after it."""
    if value.isdigit() and value.isascii():
        if int(value) >= current:
            raise UsageError(f"invalid from flag value {value}: refers to current or future build stage")
        return int(value)
    named = next((s for s in stages if s.name and s.name == value.lower()), None)
    if named is None:
        return None
    if named.index >= current:
        raise UsageError(f"invalid from flag value {value}: refers to current or future build stage")
    return named.index
