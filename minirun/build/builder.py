"""`build`: a Containerfile (or Dockerfile) into an image, the way docker's classic builder does it,
stage by stage (minirun.build.dockerfile plans which stages the target needs; the others are
skipped, as BuildKit skips them). `COPY --from` reads where an earlier stage ended, or an image.

Every instruction after FROM is a step whose result is an image of its own, kept in the store
untagged: RUN is a container on the previous step's image plus a commit of its upper dir; COPY
and ADD copy into such an upper without running anything; the other instructions only change
the config. So `history` finds an image id for every row, and the layer cache is a map from
(parent image, step) to the image that step made last time: a hit runs nothing.

VOLUME is config only (a step with no layer). Each RUN container after it gets the VOLUME paths
no mount covers made if missing, 0755 and root's (containers/plan.uncovered_volumes, made by
rootfs.make_volume_dirs), so they land in that step's layer: docker's classic builder, whose RUN
containers have anonymous volumes there and runc makes their mount points. BuildKit makes no such
path (`RUN ls /data` fails there) but keeps what a RUN writes in it, which the classic builder lost
in each step's fresh volume; minirun keeps it too, as it mounts no volume in a step. So `RUN mkdir
/data` after `VOLUME /data` fails, as in the classic builder, where BuildKit lets it pass.

`created_by` is written as docker's classic builder writes it, because `history` shows it:
  RUN (shell form)   /bin/sh -c echo v1 > /etc/config.yaml
  RUN (exec form)    echo hi
  RUN with ARGs      |1 VERSION=2 /bin/sh -c make          (docker's prependEnvOnCmd)
  COPY, ADD          /bin/sh -c #(nop) COPY file:<hex> in /dest      (one space; note the
                     trailing space, and `--chown=1:1file:<hex>` with no space, as docker has it)
  COPY --from        /bin/sh -c #(nop) COPY --from=build /out/app in /app   (the sources as
                     written: their digest would need the other image mounted; its id is in the
                     cache key instead)
  HEALTHCHECK        /bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "0s" "0s" "0s" '\x00'}
  WORKDIR            /bin/sh -c #(nop) WORKDIR /app                  (one space)
  the others         /bin/sh -c #(nop)  CMD ["sleep" "100000"]       (two spaces; Go's %q of a list)
"""

from __future__ import annotations

import copy
import json
import os
import posixpath

from minirun.build import sha256
from minirun.build.dockerfile import (
    BUILTIN_ARGS,
    DOCKERFILE_LIMIT,
    BuildPlan,
    Instruction,
    Stage,
    find_dockerfile,
    parse_dockerfile,
    plan_stages,
    split_global_args,
    stage_for,
)
from minirun.build.ignore import ContextFilter, load_filter
from minirun.errors import MinirunError, NotFound, UsageError
from minirun.image.instructions import (
    DEFAULT_SHELL,
    apply_changes,
    env_set,
    parse_healthcheck,
    parse_json_or_shell,
    parse_key_values,
    process_word,
    process_words,
)
from minirun.records import Record
from minirun.store import Store
from minirun.store.images import Image

# What only a step that runs needs (containers, signals, the copy) loads in that step: a fully
# cached build imports none of it (scripts/bench_build.py times one).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from minirun.build.buildcopy import FromImage

CACHE_FILE = "build-cache.json"
_CACHE_VERSION = "1"


# -- docker's spellings ---------------------------------------------------------------------
def go_quote(text: str) -> str:
    """Go's strconv.Quote: what `%q` writes for one string."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote_list(items: list[str] | None) -> str:
    """`%q` of a []string: `["sleep" "100000"]`, no commas."""
    return "[" + " ".join(go_quote(item) for item in items or []) + "]"


def go_quote_rune(value: int) -> str:
    """`%q` of an int: Go's strconv.QuoteRune, `'\\x03'` for 3, `'A'` for 65."""
    ch = chr(value) if 0 <= value <= 0x10FFFF else "\ufffd"
    if ch == "'":
        return "'\\''"
    return "'" + go_quote(ch)[1:-1].replace('\\"', '"') + "'"


def health_text(health: dict) -> str:
    """`%q` of docker's *HealthConfig, as HEALTHCHECK's history shows it:
    `&{["CMD-SHELL" "curl -f http://x/"] "30s" "3s" "0s" "0s" '\\x03'}`."""
    from minirun.humanize import go_duration

    durations = [
        go_quote(go_duration(health.get(key, 0))) for key in ("Interval", "Timeout", "StartPeriod", "StartInterval")
    ]
    return (
        "&{" + " ".join([go_quote_list(health.get("Test")), *durations, go_quote_rune(health.get("Retries", 0))]) + "}"
    )


def nop(shell: list[str], text: str, single: bool = False) -> str:
    """docker's withCmdComment (`#(nop) ` and the text as two words: two spaces) and
    withCmdCommentString (one word: one space; WORKDIR, COPY and ADD use it)."""
    return " ".join(shell + (["#(nop) " + text] if single else ["#(nop) ", text]))


# -- progress -------------------------------------------------------------------------------
class Progress:
    """What a build shows as it goes. This one shows nothing; the CLI renders its own."""

    def step(self, number: int, total: int, text: str) -> None: ...

    def using_cache(self) -> None: ...

    def running_in(self, container_id: str) -> None: ...

    def removing(self, container_id: str) -> None: ...

    def image(self, image_id: str) -> None: ...

    def run_stdio(self) -> tuple[int, int, int] | None:
        """fds for a RUN's stdin, stdout, stderr; None: the build's own."""
        return None

    def run_done(self, failed: bool) -> None: ...


# -- the layer cache ------------------------------------------------------------------------
def cache_key(parent: str, created_by: str, extra: str = "") -> str:
    data = json.dumps([_CACHE_VERSION, parent, created_by, extra], separators=(",", ":"))
    return sha256.new(data.encode(errors="surrogateescape")).hexdigest()


class BuildCache:
    """`build-cache.json` in the store root: step key -> the image that step made. A hint only:
    an entry whose image is gone is a miss, and a lost file costs one slow build."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.path = os.path.join(store.root, CACHE_FILE)
        self._entries: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        try:
            with open(self.path, "rb") as f:
                entries = json.load(f)
        except (FileNotFoundError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def lookup(self, key: str) -> Image | None:
        if self._entries is None:
            self._entries = self._load()
        image_id = self._entries.get(key)
        if not image_id:
            return None
        try:
            return self.store.images.get(image_id)
        except (NotFound, ValueError):
            return None

    def record(self, key: str, image_id: str) -> None:
        from minirun.store.fsutil import atomic_write

        with self.store.locked():  # read-modify-write against concurrent builds
            entries = self._load()
            entries[key] = image_id
            present = set(self.store.images.ids())
            entries = {k: v for k, v in entries.items() if v in present}
            # not fsynced: a cache lost in a crash is only a slower next build
            atomic_write(self.path, json.dumps(entries, indent=0, sort_keys=True).encode(), durable=False)
        self._entries = entries


# -- the build ------------------------------------------------------------------------------
class BuildOptions(Record):
    context: str
    dockerfile: str | None  # -f; default CONTEXT/Containerfile, else CONTEXT/Dockerfile
    tags: list  # Reference
    build_args: dict[str, str]
    no_cache: bool
    labels: dict[str, str]  # --label: a last LABEL step, as the classic builder adds
    target: str  # --target: the stage to build (and the stages it needs); default the last
    pull: bool  # --pull, passed to find_image
    dockerfile_text: str | None  # -f -: the Dockerfile itself
    archive_context: bool  # the context is an archive unpacked (build -, the Engine API): none of its links leads out
    # how FROM and COPY --from find an image: (store, name, pull) -> Image; the CLI's pulls
    find_image: Callable[[Store, str, bool], Image]
    DEFAULTS = {
        "dockerfile": None,
        "tags": list,
        "build_args": dict,
        "no_cache": False,
        "labels": dict,
        "target": "",
        "pull": False,
        "dockerfile_text": None,
        "archive_context": False,
        "find_image": lambda: lambda store, name, pull: local_image(store, name),  # a callable default is a factory
    }


class BuildResult(Record):
    image: Image
    tags: list[str]
    steps: int
    cached: int  # steps answered by the layer cache
    containers: int  # RUN containers started
    unused_args: list[str]


class _Stage(Record):
    image: Image | None  # None right after FROM scratch
    document: dict  # the image config (architecture, os, config, rootfs, history)
    name: str
    args: dict[str, str | None]  # ARGs declared here: value or None
    cmd_set: bool  # a CMD in this stage: a later ENTRYPOINT keeps it
    maintainer: str
    DEFAULTS = {"name": "", "args": dict, "cmd_set": False, "maintainer": ""}

    @property
    def config(self) -> dict:
        return self.document.setdefault("config", {})

    @property
    def parent(self) -> str:
        return self.image.id if self.image is not None else "scratch"

    def adopt(self, image: Image) -> None:
        """Continue from a step's image, just read from the store or written: no one else holds
        its config, and every step copies the document before changing it, so it is not copied."""
        self.image = image
        self.document = image.config


def local_image(store: Store, name: str) -> Image:
    """An image of the store (or an embedded recipe's, built on first use)."""
    from minirun.image.embedded import find_image

    return find_image(store, name)


def _arg_names(ins: Instruction) -> list[str]:
    from minirun.image.instructions import split_words

    return [word.partition("=")[0] for word in split_words(ins.args)]


def build_image(store: Store, options: BuildOptions, progress: Progress | None = None) -> BuildResult:
    return _Builder(store, options, progress or Progress()).build()


class _Builder:
    def __init__(self, store: Store, options: BuildOptions, progress: Progress) -> None:
        self.store = store
        self.options = options
        self.progress = progress
        self.context = os.path.abspath(options.context)
        self.cache = BuildCache(store)
        self.stage: _Stage | None = None  # the stage being built
        self.index = 0  # its index in the plan
        self.finished: dict[int, _Stage] = {}  # stages built, by index
        self.images: dict[str, Image] = {}  # images FROM and COPY --from named
        self.plan = BuildPlan([], [], 0, [])
        self.meta_args: dict[str, str | None] = {}
        self.declared: set[str] = set()
        self.cached = 0
        self.containers = 0
        self.excludes: ContextFilter | None = None

    def build(self) -> BuildResult:
        text, name = self._read_dockerfile()
        instructions = parse_dockerfile(text, name)
        global_args, rest = split_global_args(instructions)
        self.declared = {key for ins in instructions if ins.keyword == "ARG" for key in _arg_names(ins)}
        for ins in global_args:  # first: every FROM and --from may use them
            self._arg(ins, None)
        self.plan = plan = plan_stages(global_args, rest, self._expand_global, self.options.target)
        if self.options.labels:  # on the image built: the target's last step
            pairs = " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in self.options.labels.items())
            last = plan.stages[plan.target].instructions[-1].line
            plan.stages[plan.target].instructions.append(Instruction("LABEL", pairs, f"LABEL {pairs}", last))
        total = plan.steps()
        for number, ins in enumerate(global_args, 1):
            self.progress.step(number, total, ins.text)
        number = len(global_args)
        for index in plan.needed:
            self.index = index
            for ins in plan.stages[index].instructions:
                number += 1
                self.progress.step(number, total, ins.text)
                self._dispatch(ins)
            assert self.stage is not None
            self.finished[index] = self.stage
        built = self.finished[plan.target]
        if built.image is None:
            raise MinirunError("No image was generated. Is your Dockerfile empty?")
        image = built.image
        tags = [str(ref) for ref in self.options.tags]
        if self.options.tags:
            with self.store.locked():
                for ref in self.options.tags:
                    self.store.images.tag(ref, image.id)
        unused = sorted(k for k in self.options.build_args if k not in self.declared and k not in BUILTIN_ARGS)
        return BuildResult(image, tags, total, self.cached, self.containers, unused)

    def _read_dockerfile(self) -> tuple[str, str]:
        """The Dockerfile's text and name; the context's ignore rules are read with it, so a bad
        pattern fails the build before any step runs."""
        from minirun.store.fsutil import read_capped

        if self.options.dockerfile_text is not None:  # -f -
            if not os.path.isdir(self.context):
                raise NotFound(f'unable to prepare context: path "{self.options.context}" not found')
            self.excludes = load_filter(self.context, None, self._inside)
            return self.options.dockerfile_text, "Dockerfile"
        path = find_dockerfile(self.options.context, self.options.dockerfile, self._inside)
        self.excludes = load_filter(self.context, os.path.abspath(path), self._inside)
        try:
            text = read_capped(path, DOCKERFILE_LIMIT, "Dockerfile", regular=True).decode("utf-8", "surrogateescape")
        except OSError as exc:
            raise MinirunError(f"reading {path}: {exc.strerror}") from None
        return text, os.path.basename(path)

    def _inside(self, path: str) -> str:
        """Where `path` of an archive context (`build -`, the Engine API's) leads, as docker's
        daemon opens its Dockerfile and ignore file: links followed inside the context, never
        out of it (an archive may hold `Dockerfile -> /etc/shadow`). A directory context is the
        user's own: its links are followed as they are, as docker's CLI does."""
        if not self.options.archive_context:
            return path
        from minirun.build.buildcopy import resolve_in_scope

        rel = os.path.relpath(os.path.abspath(path), self.context)
        return os.path.join(self.context, resolve_in_scope(self.context, rel))

    def _expand_global(self, word: str) -> str:
        return process_word(word, [f"{k}={v}" for k, v in self.meta_args.items() if v is not None])

    def _image(self, name: str) -> Image:
        """An image FROM or COPY --from names, once per build (--pull pulls it once)."""
        if name not in self.images:
            self.images[name] = self.options.find_image(self.store, name, self.options.pull)
        return self.images[name]

    # -- dispatch -----------------------------------------------------------------------
    def _dispatch(self, ins: Instruction) -> None:
        if ins.keyword == "FROM":
            self._from(self.plan.stages[self.index])
            return
        assert self.stage is not None
        stage = self.stage
        if ins.keyword == "RUN":
            self._run(stage, ins)
        elif ins.keyword in ("COPY", "ADD"):
            self._copy(stage, ins)
        elif ins.keyword == "ARG":
            self._arg(ins, stage)
        else:
            self._config_step(stage, ins)

    def _from(self, planned: Stage) -> None:
        from minirun.image.embedded import host_architecture

        if planned.base_stage is not None:  # an earlier stage: where it ended
            earlier = self.finished[planned.base_stage]
            self.stage = _Stage(earlier.image, copy.deepcopy(earlier.document), planned.name)
        elif planned.base.lower() == "scratch":
            document = {
                "architecture": host_architecture(),
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }
            self.stage = _Stage(None, document, planned.name)
            return
        else:
            image = self._image(planned.base)
            self.stage = _Stage(image, copy.deepcopy(image.config), planned.name)
        if self.stage.image is not None:
            self.progress.image(self.stage.image.id)

    # -- environment for substitution and RUN ---------------------------------------------
    def _allowed_args(self, stage: _Stage) -> dict[str, str]:
        """docker's BuildArgs.GetAllAllowed: declared ARGs that have a value, and builtin args
        given on the command line."""
        allowed = {k: v for k, v in stage.args.items() if v is not None}
        for key in BUILTIN_ARGS:
            if key in self.options.build_args and key not in allowed:
                allowed[key] = self.options.build_args[key]
        return allowed

    def _env(self, stage: _Stage) -> list[str]:
        """What `$VAR` sees: the image's Env, then the build args it does not override."""
        env = list(stage.config.get("Env") or [])
        keys = {item.split("=", 1)[0] for item in env}
        env += [f"{k}={v}" for k, v in self._allowed_args(stage).items() if k not in keys]
        return env

    @staticmethod
    def _shell(config: dict) -> list[str]:
        return list(config.get("Shell") or DEFAULT_SHELL)

    # -- ARG ------------------------------------------------------------------------------
    def _arg(self, ins: Instruction, stage: _Stage | None) -> None:
        from minirun.image.instructions import split_words  # the Dockerfile's word split: quotes kept for process_word

        env = (
            self._env(stage) if stage is not None else [f"{k}={v}" for k, v in self.meta_args.items() if v is not None]
        )
        shown = []
        for word in split_words(ins.args):
            key, eq, raw = word.partition("=")
            if not key:
                raise UsageError("ARG names can not be blank")
            default = process_word(raw, env) if eq else None
            self.declared.add(key)
            if key in self.options.build_args:
                value: str | None = self.options.build_args[key]
            elif default is not None:
                value = default
            elif stage is not None:
                value = self.meta_args.get(key)  # `ARG NAME` in a stage takes the global ARG's value
            else:
                value = None
            if stage is None:
                self.meta_args[key] = value
            else:
                stage.args[key] = value
            if value is not None:
                env = env_set(env, key, value)
            shown.append(key + ("=" + default if default is not None else ""))
        if stage is not None:
            self._metadata(stage, "ARG " + " ".join(shown), copy.deepcopy(stage.config))

    # -- config-only steps ----------------------------------------------------------------
    def _config_step(self, stage: _Stage, ins: Instruction) -> None:
        keyword, args = ins.keyword, ins.args
        config = copy.deepcopy(stage.config)
        env = self._env(stage)
        single, extra = False, ""
        if keyword == "ENV":
            pairs = parse_key_values(args, env, "ENV")
            for key, value in pairs:
                config["Env"] = env_set(list(config.get("Env") or []), key, value)
            text = "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
        elif keyword == "LABEL":
            pairs = parse_key_values(args, env, "LABEL")
            config["Labels"] = {**(config.get("Labels") or {}), **dict(pairs)}
            text = "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)
        elif keyword == "CMD":
            config = apply_changes(config, [f"CMD {args}"])
            text = "CMD " + go_quote_list(config.get("Cmd"))
            stage.cmd_set = stage.cmd_set or bool(parse_json_or_shell(args)[0])
        elif keyword == "ENTRYPOINT":
            cmd = config.get("Cmd")
            config = apply_changes(config, [f"ENTRYPOINT {args}"])
            if stage.cmd_set and cmd is not None:  # docker: the CMD of this stage survives
                config["Cmd"] = cmd
            text = "ENTRYPOINT " + go_quote_list(config.get("Entrypoint"))
            extra = f"cmd_set={stage.cmd_set}"  # the same parent and text can give two configs
        elif keyword == "WORKDIR":
            path = _expand(args, env, "WORKDIR")
            if not path:
                raise UsageError("WORKDIR: cannot normalize nothing")
            if not path.startswith("/"):
                path = _clean(f"/{config.get('WorkingDir') or ''}/{path}")
            config["WorkingDir"] = path
            text, single = "WORKDIR " + path, True
        elif keyword == "USER":
            config["User"] = _expand(args, env, "USER")
            text = "USER " + config["User"]
        elif keyword == "EXPOSE":
            ports = [port for token in args.split() for port in process_words(token, env)]
            config = apply_changes(config, ["EXPOSE " + " ".join(ports)])
            text = "EXPOSE " + " ".join(ports)
        elif keyword == "VOLUME":
            words, is_json = parse_json_or_shell(args)
            paths = [_expand(p, env, "VOLUME") for p in (words if is_json else args.split())]
            if any(not p for p in paths):
                raise UsageError("VOLUME specified can not be an empty string")
            config["Volumes"] = {**(config.get("Volumes") or {}), **{p: {} for p in paths}}
            text = "VOLUME [" + " ".join(paths) + "]"
        elif keyword == "STOPSIGNAL":
            sig = _expand(args, env, "STOPSIGNAL")
            config = apply_changes(config, ["STOPSIGNAL " + sig])
            text = "STOPSIGNAL " + sig
        elif keyword == "SHELL":
            words, is_json = parse_json_or_shell(args)
            if not is_json or not words:
                raise UsageError("SHELL requires the arguments to be in JSON form")
            config["Shell"] = words
            text = "SHELL [" + " ".join(words) + "]"
        elif keyword == "HEALTHCHECK":
            config["Healthcheck"] = parse_healthcheck(args, dict(ins.flags))
            text = "HEALTHCHECK " + health_text(config["Healthcheck"])
        elif keyword == "MAINTAINER":
            stage.maintainer = args
            text = "MAINTAINER " + args
        else:  # parse_dockerfile let through only what is handled above
            raise UsageError(f"{keyword} is not supported by minirun build")
        self._metadata(stage, text, config, single=single, extra=extra)

    def _metadata(self, stage: _Stage, text: str, config: dict, *, single: bool = False, extra: str = "") -> None:
        # the new config's shell: a SHELL step already writes its own history with it
        created_by = nop(self._shell(config), text, single)
        key = cache_key(stage.parent, created_by, extra)
        if self._cached(stage, key):
            return
        document = self._child(stage, config, {"created_by": created_by, "empty_layer": True})
        image = self.store.commit_image([], document, None)
        self._done(stage, key, image)

    # -- RUN ------------------------------------------------------------------------------
    def _run(self, stage: _Stage, ins: Instruction) -> None:
        argv, is_json = parse_json_or_shell(ins.args)
        cmd = argv if is_json else self._shell(stage.config) + argv
        if not cmd:
            raise UsageError("RUN requires at least one argument")
        env_keys = {item.split("=", 1)[0] for item in stage.config.get("Env") or []}
        build_env = {k: v for k, v in self._allowed_args(stage).items() if k not in env_keys}
        saved = cmd
        if build_env:  # docker's prependEnvOnCmd: `|N K=V ...`, builtin args only when declared
            shown = sorted(f"{k}={v}" for k, v in build_env.items() if k in stage.args or k not in BUILTIN_ARGS)
            saved = [f"|{len(shown)}"] + shown + cmd
        created_by = " ".join(saved)
        key = cache_key(stage.parent, created_by)
        if self._cached(stage, key):
            return
        if stage.image is None or not stage.image.diff_ids:
            raise MinirunError(f"The command '{' '.join(cmd)}' cannot run: the image has no layers (FROM scratch)")
        env = list(stage.config.get("Env") or []) + [f"{k}={v}" for k, v in build_env.items()]
        image = self._run_and_commit(stage, cmd, env, created_by)
        self._done(stage, key, image)

    def _run_and_commit(self, stage: _Stage, cmd: list[str], env: list[str], created_by: str) -> Image:
        import signal

        from minirun.containers import guard
        from minirun.containers.commit import commit_container
        from minirun.containers.container import ContainerConfig, Containers, new_container_id
        from minirun.containers.foreground import host_resolv_conf, run_foreground
        from minirun.containers.removal import discard
        from minirun.runtime import supervise
        from minirun.store.initlayer import init_layer_link
        from minirun.timestamps import rfc3339_now

        assert stage.image is not None
        containers = Containers(self.store)
        container_id = new_container_id()
        config = ContainerConfig(
            id=container_id,
            name="",
            image=stage.image.id,
            image_ref=stage.image.short_id,
            created=rfc3339_now(),
            argv=cmd,
            env=env,
            workdir=stage.config.get("WorkingDir") or "/",
            user=stage.config.get("User") or "",
            hostname=container_id[:12],
            network="none",
            auto_remove=True,
        )
        init = init_layer_link(self.store)
        # a builder killed mid-step leaves no step container: its guard removes it (guard.py)
        watch = guard.start(self.store.root, container_id)
        container = containers.create(config, host_resolv_conf())
        try:
            self.progress.running_in(container_id)
            self.containers += 1
            stdio = self.progress.run_stdio()
            failed = True
            try:
                code = run_foreground(
                    self.store,
                    containers,
                    container,
                    stage.image,
                    init,
                    watch.pid,
                    stdio=stdio,
                    wait=_wait_interruptible,
                )
                failed = code != 0
            except BuildInterrupted:
                raise
            except MinirunError as exc:  # it never started: the exec failed, or the setup did
                raise MinirunError(
                    f"The command '{' '.join(cmd)}' returned a non-zero code: {exc.exit_code}: {exc.message}",
                    exit_code=exc.exit_code,
                ) from None
            finally:
                # launch.start blocks these until the wait forwards them; a failed start never waited
                signal.pthread_sigmask(signal.SIG_UNBLOCK, supervise.FORWARDED_SIGNALS)
                self.progress.run_done(failed)
            if code != 0:
                raise MinirunError(f"The command '{' '.join(cmd)}' returned a non-zero code: {code}", exit_code=code)
            image = commit_container(
                self.store,
                container,
                created_by=created_by,
                empty_layer_if_unchanged=True,
                config=copy.deepcopy(stage.config),
                author=stage.maintainer,
            )
        finally:
            discard(containers, container)  # success or not: a build leaves no container behind
            watch.done()
        self.progress.removing(container_id)
        return image

    # -- COPY and ADD ---------------------------------------------------------------------
    def _copy(self, stage: _Stage, ins: Instruction) -> None:
        from minirun.build import buildcopy

        env = self._env(stage)
        words, is_json = parse_json_or_shell(ins.args)
        words = [_expand(w, env, ins.keyword) for w in (words if is_json else ins.args.split())]
        sources_words, dest = words[:-1], words[-1]
        chown = _expand(ins.flag("chown") or "", env, ins.keyword)
        if ins.flag("from") is not None:
            self._copy_from(stage, ins.flag("from") or "", sources_words, dest, chown)
            return
        sources = buildcopy.collect_sources(
            self.context, sources_words, ins.keyword, ins.keyword == "ADD", self.excludes
        )
        if len(sources) > 1 and not dest.endswith("/"):
            raise UsageError(
                f"When using {ins.keyword} with more than one source file, "
                "the destination must be a directory and end with a /"
            )
        comment = f"{ins.keyword} {'--chown=' + chown if chown else ''}{buildcopy.sources_digest(sources)} in {dest} "
        created_by = nop(self._shell(stage.config), comment, single=True)
        key = cache_key(stage.parent, created_by)
        if self._cached(stage, key):
            return
        target, dest_is_dir = _destination(stage.config.get("WorkingDir") or "/", dest)
        image = self._copy_and_commit(stage, sources, target, dest_is_dir, chown, ins.keyword, created_by)
        self._done(stage, key, image)

    def _copy_from(self, stage: _Stage, value: str, words: list[str], dest: str, chown: str) -> None:
        """`COPY --from=stage|index|image`: from where an earlier stage ended, or from an image.
        The cache key holds the source's image id: the same image gives the same files."""
        from minirun.build import buildcopy

        name = self._expand_global(value)
        if not name:
            raise UsageError(f"COPY --from={value}: the stage or image name is empty")
        index = stage_for(self.plan.stages, name, self.index)
        if index is not None:
            source = self.finished[index]
            diff_ids = source.document.get("rootfs", {}).get("diff_ids", [])
            origin, identity = f"stage {self.plan.stages[index].name or index}", source.parent
        else:
            image = self._image(name)
            diff_ids, origin, identity = image.diff_ids, f"image {name}", image.id
        if len(words) > 1 and not dest.endswith("/"):
            raise UsageError(
                "When using COPY with more than one source file, the destination must be a directory and end with a /"
            )
        chown_flag = f"--chown={chown} " if chown else ""
        created_by = nop(
            self._shell(stage.config), f"COPY {chown_flag}--from={name} {' '.join(words)} in {dest} ", single=True
        )
        key = cache_key(stage.parent, created_by, identity)
        if self._cached(stage, key):
            return
        target, dest_is_dir = _destination(stage.config.get("WorkingDir") or "/", dest)
        lowers = [os.path.relpath(self.store.layers.short_link(d), self.store.root) for d in reversed(diff_ids)]
        from_image = buildcopy.FromImage(origin, lowers, words, scratch="")
        image = self._copy_and_commit(stage, [], target, dest_is_dir, chown, "COPY", created_by, from_image)
        self._done(stage, key, image)

    def _copy_and_commit(
        self,
        stage: _Stage,
        sources: list,
        target: str,
        dest_is_dir: bool,
        chown: str,
        keyword: str,
        created_by: str,
        from_image: FromImage | None = None,
    ) -> Image:
        from minirun.build import buildcopy
        from minirun.containers import guard
        from minirun.containers.commit import is_empty, stage_upper
        from minirun.containers.container import ContainerConfig, Containers, new_container_id
        from minirun.containers.foreground import host_resolv_conf
        from minirun.containers.removal import discard
        from minirun.timestamps import rfc3339_now

        containers = Containers(self.store)
        container_id = new_container_id()
        # a container that never runs: its record gives the step an upper dir that `ps -a`
        # shows and `rm` removes should the builder die mid-step
        config = ContainerConfig(
            id=container_id,
            name="",
            image=stage.image.id if stage.image else "",
            image_ref=stage.image.short_id if stage.image else "scratch",
            created=rfc3339_now(),
            argv=created_by.split(" ", 2),
            env=[],
            hostname=container_id[:12],
            auto_remove=True,
        )
        watch = guard.start(self.store.root, container_id)
        container = containers.create(config, host_resolv_conf())
        staged: list = []
        extracted: list = []
        try:
            sources, extracted = buildcopy.extract_archives(self.store, sources)
            diff_ids = stage.document.get("rootfs", {}).get("diff_ids", [])
            lowers = [os.path.relpath(self.store.layers.short_link(d), self.store.root) for d in reversed(diff_ids)]
            if from_image is not None:  # its mount lives in the step's dir, gone with it
                from_image = buildcopy.FromImage(
                    **{**from_image.as_dict(), "scratch": os.path.join(container.dir, "from")}
                )
            buildcopy.copy_into_image(
                self.store.root,
                lowers,
                container.upper,
                container.work,
                sources,
                target,
                dest_is_dir,
                chown,
                keyword,
                from_image,
            )
            entry: dict = {"created_by": created_by}
            if is_empty(container.upper):
                entry["empty_layer"] = True
            else:
                staged.append(stage_upper(self.store, container.upper))
            document = self._child(
                stage, copy.deepcopy(stage.config), entry, staged[0].applied.diff_id if staged else None
            )
            return self.store.commit_image(staged, document, None)
        finally:
            for layer in staged + extracted:
                self.store.layers.discard(layer)
            discard(containers, container)
            watch.done()

    # -- step results ---------------------------------------------------------------------
    def _cached(self, stage: _Stage, key: str) -> bool:
        if self.options.no_cache:
            return False
        image = self.cache.lookup(key)
        if image is None:
            return False
        self.progress.using_cache()
        self.cached += 1
        stage.adopt(image)
        self.progress.image(image.id)
        return True

    def _done(self, stage: _Stage, key: str, image: Image) -> None:
        self.cache.record(key, image.id)
        stage.adopt(image)
        self.progress.image(image.id)

    def _child(self, stage: _Stage, config: dict, entry: dict, diff_id: str | None = None) -> dict:
        """The image config of a step: the parent's, with this config, one more history entry
        and maybe one more layer; nothing else of the parent's last commit carries over."""
        from minirun.timestamps import rfc3339_now

        created = rfc3339_now()
        document = {k: v for k, v in copy.deepcopy(stage.document).items() if k not in ("container", "comment")}
        full_entry = {"created": created, **entry}
        if stage.maintainer:
            full_entry["author"] = stage.maintainer
            document["author"] = stage.maintainer
        document["created"] = created
        document["config"] = config
        document["history"] = list(document.get("history") or []) + [full_entry]
        diff_ids = list(document.get("rootfs", {}).get("diff_ids", []))
        if diff_id is not None:
            diff_ids.append(diff_id)
        document["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        return document


class BuildInterrupted(MinirunError):
    """Ctrl-C (or TERM, HUP) during a RUN: the step's container is killed, the build stops."""


def _wait_interruptible(pid: int) -> int:
    """Wait for a RUN's PID 1, forwarding signals; Ctrl-C (or TERM, HUP) ends the step and the
    build, as docker's does: a shell as PID 1 would ignore a forwarded SIGINT."""
    import signal

    from minirun.runtime import supervise

    received: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        received.append(signum)
        supervise.kill(pid)

    previous = supervise.forward_signals(pid, also={signal.SIGINT: stop, signal.SIGTERM: stop, signal.SIGHUP: stop})
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        supervise.restore_handlers(previous)
    if received:
        raise BuildInterrupted("build interrupted", exit_code=128 + received[0])
    return supervise.exit_code_of(status)


def _expand(word: str, env: list[str], instruction: str) -> str:
    try:
        return process_word(word, env)
    except UsageError as exc:
        raise UsageError(f"{instruction}: {exc.message}") from None


def _clean(path: str) -> str:
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _destination(workdir: str, requested: str) -> tuple[str, bool]:
    """docker's normalizeDest: a relative dest is below WORKDIR. The dest names a directory when
    it ends in `/` (or is `.`/`..`): a file source then keeps its own name inside it."""
    is_dir = requested.endswith("/") or requested in (".", "..") or requested.endswith(("/.", "/.."))
    path = requested if requested.startswith("/") else f"/{workdir}/{requested}"
    return _clean(path), is_dir
