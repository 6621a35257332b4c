"""Dockerfile config instructions (CMD, ENV, WORKDIR, ...) applied to an image config, as
`docker commit -c` and `docker import -c` apply them; the pieces are public for the builder."""

from __future__ import annotations

import copy
import posixpath
import re
from collections.abc import Callable

from minirun import leanjson
from minirun.errors import UsageError

DEFAULT_SHELL = ["/bin/sh", "-c"]
# Valid in docker's -c but not (yet) here; named so the error says "unsupported", not "unknown".
_UNSUPPORTED = {"HEALTHCHECK", "ONBUILD"}
_PORT_RE = re.compile(r"(\d+)(?:-(\d+))?", re.ASCII)
_PROTOCOLS = {"tcp", "udp", "sctp"}
_MAX_SIGNAL = 64  # SIGRTMAX on Linux


# -- parsing pieces -------------------------------------------------------------------------
def split_instruction(line: str) -> tuple[str, str]:
    """`cmd  echo hi` -> (`CMD`, `echo hi`): the keyword upper-cased, the rest stripped."""
    parts = line.strip().split(None, 1)
    if not parts:
        raise UsageError("empty instruction")
    return parts[0].upper(), parts[1].strip() if len(parts) == 2 else ""


def parse_json_or_shell(args: str) -> tuple[list[str], bool]:
    """Exec form (a JSON array of strings) or shell form (the text as one argument).
    Text that starts with `[` but is not JSON is shell form, as in docker."""
    text = args.strip()
    if text.startswith("["):
        try:
            value = leanjson.loads(text)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, list):
            if not all(isinstance(item, str) for item in value):
                raise UsageError("when using JSON array syntax, arrays must be comprised of strings only")
            return value, True
    return ([text] if text else []), False


def parse_key_values(args: str, env: list[str] | None = None, instruction: str = "ENV") -> list[tuple[str, str]]:
    """`K=V K2="v 2"` or legacy `K some value`, with quotes, backslashes and `$VAR`s
    processed against `env` as the Dockerfile does for ENV and LABEL."""
    words = split_words(args)
    if not words:
        raise UsageError(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        # Legacy form: the first word is the key, all the rest (spacing kept) the value.
        parts = args.strip().split(None, 1)
        if len(parts) < 2:
            raise UsageError(f"{instruction} must have two arguments")
        raw_pairs = [(parts[0], parts[1])]
    else:
        raw_pairs = []
        for word in words:
            if "=" not in word:
                raise UsageError(
                    f'{instruction}: Syntax error - can\'t find = in "{word}". Must be of the form: name=value'
                )
            key, value = word.split("=", 1)
            raw_pairs.append((key, value))
    # Every pair sees the env from before this instruction: `ENV A=1 B=$A` takes the old A.
    pairs = [(_expand(key, env, instruction), _expand(value, env, instruction)) for key, value in raw_pairs]
    if any(not key for key, _ in pairs):
        raise UsageError(f"{instruction} names can not be blank")
    return pairs


def env_set(env: list[str], key: str, value: str) -> list[str]:
    """A copy of `env` with `key=value` replacing the first entry for key, else appended."""
    result = list(env)
    for i, entry in enumerate(result):
        if entry.split("=", 1)[0] == key:
            result[i] = f"{key}={value}"
            return result
    result.append(f"{key}={value}")
    return result


def process_word(word: str, env: list[str] | None = None) -> str:
    """Docker's ProcessWord: remove quotes and backslashes, substitute `$VAR`, `${VAR}`,
    `${VAR:-default}` and `${VAR:+alternative}` from `env` (unset means empty)."""
    return "".join(text for text, _ in _pieces(word, env))


def process_words(word: str, env: list[str] | None = None) -> list[str]:
    """Docker's ProcessWords: like process_word, then split on unquoted whitespace."""
    words: list[str] = []
    current = ""
    for text, splittable in _pieces(word, env):
        if not splittable:
            current += text
            continue
        for ch in text:
            if not ch.isspace():
                current += ch
            elif current:
                words.append(current)
                current = ""
    return words + [current] if current else words


# -- applying changes -----------------------------------------------------------------------
def apply_changes(config: dict, changes: list[str]) -> dict:
    """A new OCI image config with each change (one instruction a line) applied in order."""
    result = copy.deepcopy(config)
    cmd_set = False
    for change in changes:
        for line in change.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            keyword, args = split_instruction(line)
            handler = _HANDLERS.get(keyword)
            if handler is None:
                if keyword in _UNSUPPORTED:
                    raise UsageError(f"{keyword} is not supported as a change command")
                raise UsageError(f"{keyword.lower()} is not a valid change command")
            handler(result, args)
            if keyword == "CMD" and parse_json_or_shell(args)[0]:
                cmd_set = True
            # Docker: an ENTRYPOINT drops the inherited CMD unless these changes set one.
            if keyword == "ENTRYPOINT" and not cmd_set:
                result.pop("Cmd", None)
    return result


def _cmd(config: dict, args: str) -> None:
    argv, is_json = parse_json_or_shell(args)
    config["Cmd"] = argv if is_json else _shell(config) + argv


def _entrypoint(config: dict, args: str) -> None:
    argv, is_json = parse_json_or_shell(args)
    if not argv:
        # `ENTRYPOINT []` (or nothing) clears it.
        config.pop("Entrypoint", None)
    else:
        config["Entrypoint"] = argv if is_json else _shell(config) + argv


def _env(config: dict, args: str) -> None:
    env = list(config.get("Env") or [])
    for key, value in parse_key_values(args, env, "ENV"):
        env = env_set(env, key, value)
    config["Env"] = env


def _label(config: dict, args: str) -> None:
    labels = dict(config.get("Labels") or {})
    labels.update(parse_key_values(args, config.get("Env"), "LABEL"))
    config["Labels"] = labels


def _workdir(config: dict, args: str) -> None:
    path = _expand(_one_argument("WORKDIR", args), config.get("Env"), "WORKDIR")
    if not path:
        raise UsageError("WORKDIR: cannot normalize nothing")
    if not path.startswith("/"):
        # Docker cleans a relative WORKDIR joined to the previous one, but keeps an
        # absolute one exactly as written.
        path = _clean_path(f"/{config.get('WorkingDir') or ''}/{path}")
    config["WorkingDir"] = path


def _user(config: dict, args: str) -> None:
    config["User"] = _expand(_one_argument("USER", args), config.get("Env"), "USER")


def _expose(config: dict, args: str) -> None:
    if not args:
        raise UsageError("EXPOSE requires at least one argument")
    ports = dict(config.get("ExposedPorts") or {})
    for token in args.split():
        # The one instruction where a variable may expand to several words.
        try:
            words = process_words(token, config.get("Env"))
        except UsageError as e:
            raise UsageError(f"EXPOSE: {e.message}") from None
        for word in words:
            ports.update({port: {} for port in _port_keys(word)})
    config["ExposedPorts"] = ports


def _volume(config: dict, args: str) -> None:
    paths, is_json = parse_json_or_shell(args)
    if not is_json:
        paths = args.split()
    if not paths:
        raise UsageError("VOLUME requires at least one argument")
    volumes = dict(config.get("Volumes") or {})
    for raw in paths:
        path = _expand(raw, config.get("Env"), "VOLUME")
        if not path:
            raise UsageError("VOLUME specified can not be an empty string")
        volumes[path] = {}
    config["Volumes"] = volumes


def _signal_names() -> set[str]:
    """The names STOPSIGNAL takes, without SIG. signal loads here: only STOPSIGNAL needs it."""
    import signal

    return (
        {name[3:] for name in signal.Signals.__members__ if name.startswith("SIG")}
        | {f"RTMIN+{n}" for n in range(1, 16)}
        | {f"RTMAX-{n}" for n in range(1, 15)}
    )


def _stopsignal(config: dict, args: str) -> None:
    sig = _expand(_one_argument("STOPSIGNAL", args), config.get("Env"), "STOPSIGNAL")
    if sig.isdigit() and sig.isascii():
        valid = 0 < int(sig) <= _MAX_SIGNAL
    else:
        upper = sig.upper()
        valid = (upper[3:] if upper.startswith("SIG") else upper) in _signal_names()
    if not valid:
        raise UsageError(f"STOPSIGNAL: invalid signal: {sig}")
    # Stored as written (`SIGTERM`, `term`, `15`), as docker does.
    config["StopSignal"] = sig


_HANDLERS: dict[str, Callable[[dict, str], None]] = {
    "CMD": _cmd,
    "ENTRYPOINT": _entrypoint,
    "ENV": _env,
    "LABEL": _label,
    "WORKDIR": _workdir,
    "USER": _user,
    "EXPOSE": _expose,
    "VOLUME": _volume,
    "STOPSIGNAL": _stopsignal,
}


def _shell(config: dict) -> list[str]:
    # Docker images carry SHELL in their config; the OCI spec has no such key.
    return list(config.get("Shell") or DEFAULT_SHELL)


def _one_argument(instruction: str, args: str) -> str:
    if not args:
        raise UsageError(f"{instruction} requires exactly one argument")
    return args


def _port_keys(spec: str) -> list[str]:
    """`80` -> [`80/tcp`]; `8000-8001/udp` -> [`8000/udp`, `8001/udp`] (nat.ParsePortSpecs)."""
    port, _, proto = spec.partition("/")
    proto = (proto.split("/")[0] or "tcp").lower()
    match = _PORT_RE.fullmatch(port)
    if match is None or any(int(p) > 65535 for p in match.groups() if p is not None):
        raise UsageError(f"EXPOSE: invalid containerPort: {port}")
    start = int(match.group(1))
    end = int(match.group(2) or start)
    if end < start:
        raise UsageError(f"EXPOSE: invalid range specified: {port}")
    if proto not in _PROTOCOLS:
        raise UsageError(f"EXPOSE: invalid proto: {proto}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def _clean_path(path: str) -> str:
    cleaned = posixpath.normpath(path)
    # POSIX keeps a leading `//`; Go's filepath.Clean (and docker) do not.
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _expand(word: str, env: list[str] | None, instruction: str) -> str:
    try:
        return process_word(word, env)
    except UsageError as e:
        raise UsageError(f"{instruction}: {e.message}") from None


# -- the Dockerfile's word rules ------------------------------------------------------------
def split_words(text: str) -> list[str]:
    """Split on whitespace outside quotes, keeping quotes and backslashes in the words
    (process_word removes them later), as docker's parser does for ENV and LABEL."""
    words: list[str] = []
    word, quote = "", ""
    i = 0
    while i < len(text):
        ch = text[i]
        if not quote and ch.isspace():
            if word:
                words.append(word)
            word = ""
        elif ch == "\\" and quote != "'":
            # A backslash keeps itself and the next character; a trailing one is dropped.
            word += text[i : i + 2] if i + 1 < len(text) else ""
            i += 1
        else:
            if quote and ch == quote:
                quote = ""
            elif not quote and ch in "'\"":
                quote = ch
            word += ch
        i += 1
    return words + [word] if word else words


class _Lexer:
    """Turns one word into pieces of (text, splittable): quoted and escaped text is not
    split by process_words; literal and substituted text is."""

    def __init__(self, text: str, env: list[str]) -> None:
        self.text = text
        self.env = env
        self.pos = 0

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _next(self) -> str:
        ch = self._peek()
        self.pos += 1 if ch else 0
        return ch

    def pieces(self, stop: str = "") -> list[tuple[str, bool]]:
        out: list[tuple[str, bool]] = []
        while self._peek():
            ch = self._peek()
            if stop and ch == stop:
                self._next()
                return out
            if ch == "'":
                out.append((self._single_quoted(), False))
            elif ch == '"':
                out.append((self._double_quoted(), False))
            elif ch == "$":
                out.append((self._dollar(), True))
            elif ch == "\\":
                self._next()
                escaped = self._next()  # a trailing backslash is dropped
                if escaped:
                    out.append((escaped, False))
            else:
                out.append((self._next(), True))
        if stop:
            raise UsageError(f"unexpected end of statement while looking for matching {stop}")
        return out

    def _single_quoted(self) -> str:
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            raise UsageError("unexpected end of statement while looking for matching single-quote")
        value = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return value

    def _double_quoted(self) -> str:
        self._next()
        value = ""
        while True:
            ch = self._peek()
            if not ch:
                raise UsageError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self._next()
                return value
            if ch == "$":
                value += self._dollar()
                continue
            self._next()
            if ch == "\\":
                if not self._peek():
                    continue  # dropped; the open quote is reported next
                # Inside double quotes a backslash escapes only `"`, `$` and itself.
                if self._peek() in '"$\\':
                    ch = self._next()
            value += ch

    def _dollar(self) -> str:
        self._next()
        if self._peek() != "{":
            name = self._name()
            return self._lookup(name) if name else "$"
        self._next()
        if not self._peek():
            raise UsageError("syntax error: missing '}'")
        if self._peek() in "{}:":
            raise UsageError("syntax error: bad substitution")
        name = self._name()
        ch = self._next()
        if ch == "}":
            return self._lookup(name)
        if ch != ":":
            raise UsageError("missing ':' in substitution")
        modifier = self._next()
        try:
            word = "".join(text for text, _ in self.pieces(stop="}"))
        except UsageError:
            if not self._peek():
                raise UsageError("syntax error: missing '}'") from None
            raise
        value = self._lookup(name)
        if modifier == "-":
            return value or word
        if modifier == "+":
            return word if value else value
        raise UsageError(f"unsupported modifier ({modifier}) in substitution")

    def _name(self) -> str:
        # `$1` is one digit, as in the shell; otherwise letters, digits and `_`.
        if self._peek().isdecimal():
            return self._next()
        start = self.pos
        while self._peek() and (self._peek().isalpha() or self._peek().isdecimal() or self._peek() == "_"):
            self._next()
        return self.text[start : self.pos]

    def _lookup(self, name: str) -> str:
        for entry in self.env:
            key, _, value = entry.partition("=")
            if key == name:
                return value
        return ""


def _pieces(word: str, env: list[str] | None) -> list[tuple[str, bool]]:
    try:
        return _Lexer(word, env or []).pieces()
    except UsageError as e:
        raise UsageError(f'failed to process "{word}": {e.message}') from None


# -- HEALTHCHECK ----------------------------------------------------------------------------
HEALTHCHECK_FLAGS = ("interval", "timeout", "start-period", "start-interval", "retries")
_HEALTH_DURATIONS = {
    "interval": "Interval",
    "timeout": "Timeout",
    "start-period": "StartPeriod",
    "start-interval": "StartInterval",
}
_MIN_HEALTH_DURATION = 1_000_000  # docker's container.MinimumDuration: 1ms


def parse_healthcheck(args: str, flags: dict[str, str] | None = None) -> dict:
    """`HEALTHCHECK [--interval=D ...] CMD ...` or `HEALTHCHECK NONE` as the image config's
    Healthcheck (docker's JSON: durations in ns, zero fields left out)."""
    from minirun.humanize import parse_go_duration

    flags = flags or {}
    parts = args.split(None, 1)
    if not parts:
        raise UsageError("HEALTHCHECK requires at least one argument")
    kind, rest = parts[0].upper(), parts[1] if len(parts) == 2 else ""
    if kind == "NONE":
        if rest.strip() or flags:
            raise UsageError("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind != "CMD":
        raise UsageError(f'Unknown type "{parts[0].upper()}" in HEALTHCHECK (try CMD)')
    command, is_json = parse_json_or_shell(rest)
    if not command:
        raise UsageError("Missing command after HEALTHCHECK CMD")
    health: dict = {"Test": (["CMD"] if is_json else ["CMD-SHELL"]) + command}
    for flag, key in _HEALTH_DURATIONS.items():
        if flags.get(flag):
            ns = parse_go_duration(flags[flag])
            if ns and ns < _MIN_HEALTH_DURATION:
                raise UsageError(f'Interval "{flag}" cannot be less than 1ms')
            if ns:
                health[key] = ns
    if flags.get("retries"):
        text = flags["retries"]
        if not re.fullmatch(r"[+-]?\d+", text, re.ASCII) or abs(int(text)) >= 1 << 31:
            raise UsageError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
        if int(text) < 0:
            raise UsageError(f"--retries cannot be negative ({int(text)})")
        if int(text):
            health["Retries"] = int(text)
    return health
