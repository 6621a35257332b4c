"""`.dockerignore`: which files of a build context COPY and ADD may never see.

The rules are docker's (moby's ignorefile and patternmatcher): one pattern a line; a line that
starts with `#` is a comment; blanks are trimmed; `!` makes an exception; a pattern is cleaned
like a Go path and a leading `/` is dropped (patterns are always relative to the context root);
`*`, `?`, `[...]` and `\\` are Go's filepath.Match, `**` spans any number of directories. A path
is excluded when the last pattern that matches it, or one of its parent directories, is not an
exception. So `docs` then `!docs/README.md` keeps only the README of `docs/`.

COPY's own wildcards are filepath.Match too, one path component at a time (component_matcher).

The file used is `<Dockerfile>.dockerignore` next to the Dockerfile when there is one (BuildKit's
rule), else `.containerignore` (podman's) or `.dockerignore` at the context root. The Dockerfile
and the ignore file may be listed: they are still read, but COPY does not see them, as in docker.
"""

from __future__ import annotations

import os
import posixpath
import re
import warnings
from collections.abc import Callable

from minirun.errors import UsageError
from minirun.records import Record

IGNORE_FILE_LIMIT = 4 << 20  # as a Dockerfile: no real one comes near
_UTF8_BOM = "\ufeff"
_REGEX_ESCAPES = frozenset(".+()|{}$")  # regexp metacharacters that mean nothing to filepath.Match


def go_clean(path: str) -> str:
    """Go's path.Clean: like normpath, but a leading `//` is one slash and "" is "."."""
    cleaned = posixpath.normpath(path) if path else "."
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def read_patterns(text: str) -> list[str]:
    """The patterns of an ignore file, as docker's ignorefile.ReadAll returns them."""
    patterns: list[str] = []
    for number, line in enumerate(text.split("\n")):
        line = line.removesuffix("\r")
        if number == 0:
            line = line.removeprefix(_UTF8_BOM)
        if line.startswith("#"):  # only at the very start of the line: ` #x` is a pattern
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


class Pattern(Record):
    text: str  # cleaned, without the `!`
    exception: bool
    kind: str  # "exact", "prefix" (`dir/**`), "suffix" (`**/name`) or "regexp"
    regexp: re.Pattern | None

    def matches(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            # `**/foo` also matches `foo` itself
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regexp is not None
        return self.regexp.fullmatch(path) is not None


def compile_pattern(raw: str, source: str = ".dockerignore") -> Pattern | None:
    """One pattern as patternmatcher.New takes it (None for a blank one). A pattern Go's
    filepath.Match would refuse is an error naming it."""
    text = raw.strip()
    if not text:
        return None
    text = go_clean(text)
    exception = text.startswith("!")
    if exception:
        if text == "!":
            raise UsageError(f'{source}: illegal exclusion pattern: "!"')
        text = text[1:]
    pattern = _pattern(text, exception)
    if pattern is None:
        raise UsageError(f"{source}: syntax error in pattern: {text}")
    return pattern


def _pattern(text: str, exception: bool) -> Pattern | None:
    if not _valid_go_pattern(text):
        return None
    kind, expression = _translate(text)
    regexp = None
    if kind == "regexp":
        try:
            with warnings.catch_warnings():  # `[[]` is a set holding `[`, as in Go
                warnings.simplefilter("ignore", FutureWarning)
                regexp = re.compile(expression)
        except re.error:  # Go's regexp refuses it too (a range like `[z-a]`)
            return None
    return Pattern(text, exception, kind, regexp)


def _translate(pattern: str, globstar: bool = True) -> tuple[str, str]:
    """patternmatcher's compile: the match kind and, for "regexp", the regular expression.
    Without `globstar`, `**` is two `*` (filepath.Match's own meaning)."""
    out: list[str] = []
    kind = "exact"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        at_start = i == 0
        i += 1
        if globstar and ch == "*" and pattern[i : i + 1] == "*":
            i += 1
            if pattern[i : i + 1] == "/":  # `**/` is `**`: the slash is eaten
                i += 1
            if i == len(pattern):  # a trailing `**` takes everything below
                if kind == "exact":
                    kind = "prefix"
                else:
                    out.append(".*")
                    kind = "regexp"
            else:
                out.append("(.*/)?")  # any number of directories, even none
                kind = "regexp"
            if at_start:  # `**/name`: a suffix test, unless a wildcard follows
                kind = "suffix"
        elif ch == "*":
            out.append("[^/]*")
            kind = "regexp"
        elif ch == "?":
            out.append("[^/]")
            kind = "regexp"
        elif ch in _REGEX_ESCAPES:
            out.append("\\" + ch)
        elif ch == "\\":
            if i < len(pattern):
                # filepath.Match's meaning: the next character itself
                out.append(re.escape(pattern[i]))
                i += 1
                kind = "regexp"
            else:
                out.append("\\\\")
        elif ch in "[]":
            out.append(ch)
            kind = "regexp"
        else:
            out.append(ch)
    return kind, "".join(out)


def _valid_go_pattern(pattern: str) -> bool:
    """What Go's filepath.Match accepts: every `[` closed, no empty or one-sided range, no
    trailing `\\` (inside a class or out)."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                return False
            i += 2
            continue
        if ch != "[":
            i += 1
            continue
        i += 1
        if i < n and pattern[i] == "^":
            i += 1
        ranges = 0
        while True:
            if i < n and pattern[i] == "]" and ranges:
                i += 1
                break
            i = _class_char(pattern, i)
            if i < 0:
                return False
            if pattern[i] == "-":
                i = _class_char(pattern, i + 1)
                if i < 0:
                    return False
            ranges += 1
    return True


def _class_char(pattern: str, i: int) -> int:
    """Go's getEsc: one (maybe escaped) character of a class; -1 where Go says ErrBadPattern.
    Something must follow it (the class is still open)."""
    if i >= len(pattern) or pattern[i] in "-]":
        return -1
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            return -1
    i += 1
    return i if i < len(pattern) else -1


def component_matcher(part: str) -> Callable[[str], bool] | None:
    """Go's filepath.Match for one path component, as COPY's wildcards use it (`*` and `?` never
    cross a slash; a leading dot is matched like any other character); None for a plain name."""
    if not any(ch in part for ch in "*?["):
        return None
    try:
        if not _valid_go_pattern(part):
            raise re.error("")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            regexp = re.compile(_translate(part, globstar=False)[1])
    except re.error:
        raise UsageError(f"syntax error in pattern: {part}") from None
    return lambda name: regexp.fullmatch(name) is not None


class ContextFilter:
    """The patterns of one ignore file, asked about paths relative to the context root."""

    def __init__(self, patterns: list[str], source: str = ".dockerignore") -> None:
        self.source = source  # the file they came from, for messages
        compiled = [compile_pattern(p, source) for p in patterns]
        self.patterns = [p for p in compiled if p is not None]
        self.has_exceptions = any(p.exception for p in self.patterns)
        # a dir -> per pattern, whether it matches the dir or one of its parents: a walk asks
        # about every entry of a dir, and a context may nest dirs thousands deep
        self._above: dict[str, list[bool]] = {}

    def excluded(self, rel: str) -> bool:
        """patternmatcher's MatchesOrParentMatches: the last pattern matching the path or one
        of its parents decides; the context root itself is never excluded."""
        path = go_clean(rel)
        if path == ".":
            return False
        parent, slash, _ = path.rpartition("/")
        above = self._matched_above(parent) if slash else None  # "" for "/x": a parent, as split has it
        matched = False
        for i, pattern in enumerate(self.patterns):
            if pattern.exception != matched:
                continue  # an inclusion already holds, or an exception has nothing to undo
            if pattern.matches(path) or (above is not None and above[i]):
                matched = not pattern.exception
        return matched

    def _matched_above(self, path: str) -> list[bool]:
        """Per pattern, whether it matches dir `path` or one of its parents: each dir's from its
        parent's, the parents not known yet found in a loop."""
        found = self._above.get(path)
        if found is not None:
            return found
        todo = [path]
        while "/" in todo[-1] and todo[-1].rpartition("/")[0] not in self._above:
            todo.append(todo[-1].rpartition("/")[0])
        for each in reversed(todo):
            parent, slash, _ = each.rpartition("/")
            up = self._above[parent] if slash else None
            self._above[each] = [
                (up is not None and up[i]) or pattern.matches(each) for i, pattern in enumerate(self.patterns)
            ]
        return self._above[path]

    def may_keep_below(self, rel: str) -> bool:
        """Whether an excluded directory can hold a path an exception brings back: False lets
        a walk skip the whole directory (a `node_modules` is never read)."""
        if not self.has_exceptions:
            return False
        parts = go_clean(rel).split("/")
        for pattern in self.patterns:
            if pattern.exception and _could_match_below(pattern.text.split("/"), parts):
                return True
        return False


def _could_match_below(pattern_parts: list[str], dir_parts: list[str]) -> bool:
    """Whether an exception can match some path below the directory but not the directory (a
    match on the directory or a parent would have kept it already). Without `**` a pattern
    matches paths of its own depth only, so it must be deeper and agree on the way down."""
    if any("**" in part or "[" in part or "\\" in part for part in pattern_parts):
        return True  # any depth (`[^x]` and `\/` match a slash too): cannot rule it out
    if len(pattern_parts) <= len(dir_parts):
        return False
    for pattern_part, dir_part in zip(pattern_parts, dir_parts, strict=False):
        compiled = _pattern(pattern_part, False)
        if compiled is None or not compiled.matches(dir_part):
            return False
    return True


def find_ignore_file(context: str, dockerfile: str | None, inside: Callable[[str], str] | None = None) -> str | None:
    """The ignore file a build uses, or None. `inside`: where a path of an archive context
    really leads (its links resolved inside the context)."""
    candidates = [dockerfile + ".dockerignore"] if dockerfile else []
    candidates += [os.path.join(context, ".containerignore"), os.path.join(context, ".dockerignore")]
    if inside is not None:
        candidates = [inside(path) for path in candidates]
    return next((path for path in candidates if os.path.isfile(path)), None)


def load_filter(
    context: str, dockerfile: str | None, inside: Callable[[str], str] | None = None
) -> ContextFilter | None:
    """The context's filter from its ignore file; None when there is none."""
    from minirun.store.fsutil import read_capped

    path = find_ignore_file(context, dockerfile, inside)
    if path is None:
        return None
    try:
        text = read_capped(path, IGNORE_FILE_LIMIT, "ignore file", regular=True).decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise UsageError(f"reading {path}: {exc.strerror}") from None
    return ContextFilter(read_patterns(text), path)
