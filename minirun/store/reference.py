"""Docker image references (`[domain[:port]/]path[:tag][@digest]`), parsed by docker's grammar."""

from __future__ import annotations

from minirun.errors import UsageError

# re is imported where a pattern is used: `busybox` or `app:1.0` are read without it
# (_simple_reference), which keeps ~3 ms off every `run`.

# distribution/reference's grammar. Path components are lowercase only; the domain may
# have uppercase letters, which is why `Foo/bar` names a registry called `Foo`.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"\w[\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?"  # with re.ASCII: Go's \w is [0-9A-Za-z_]
_HEX = frozenset("0123456789abcdef")
_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

# go-digest's registered algorithms and the hex length each one needs.
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}
_MAX_PATH_LEN = 255


class Reference:
    """A parsed reference; immutable, compared by value. A plain class: `dataclasses` imports
    `inspect`, ~9 ms of every verb that names an image (run's and images' starts included)."""

    __slots__ = ("name", "tag", "digest")
    name: str
    tag: str | None
    digest: str | None

    def __init__(self, name: str, tag: str | None = None, digest: str | None = None) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "tag", tag)
        object.__setattr__(self, "digest", digest)

    def __setattr__(self, attribute: str, value: object) -> None:
        raise AttributeError(f"Reference is immutable: cannot set {attribute}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reference):
            return NotImplemented
        return (self.name, self.tag, self.digest) == (other.name, other.tag, other.digest)

    def __hash__(self) -> int:
        return hash((self.name, self.tag, self.digest))

    def __repr__(self) -> str:
        return f"Reference(name={self.name!r}, tag={self.tag!r}, digest={self.digest!r})"

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def domain(self) -> str | None:
        """The registry host[:port], when the name has one (docker's splitDockerDomain rule)."""
        return _split_domain(self.name)[0]

    @property
    def path(self) -> str:
        """The name without its domain."""
        return _split_domain(self.name)[1]


def parse_reference(text: str, default_tag: str | None = "latest") -> Reference:
    """Parse a reference as `docker pull`/`docker tag` do, but keep the name as typed
    (no `docker.io/library/` added). `default_tag` is added only when neither a tag
    nor a digest was given."""
    simple = _simple_reference(text, default_tag)
    if simple is not None:
        return simple
    import re

    # Docker refuses names that would be mistaken for image IDs.
    if len(text) == 64 and set(text) <= _HEX:
        raise UsageError(f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    # Docker checks case before syntax, on the path as it would send it to Docker Hub.
    remote = _docker_remote_path(text).split(":", 1)[0]
    if remote.lower() != remote:
        raise UsageError(f"invalid reference format: repository name ({remote}) must be lowercase")
    match = re.fullmatch(_REFERENCE, text, re.ASCII)
    if match is None:
        raise UsageError(f'invalid reference format: "{text}"')
    name, tag, digest = match.groups()
    # Docker's 255 limit is on the path, counting the `library/` it adds for Hub names.
    if len(_docker_remote_path(name)) > _MAX_PATH_LEN:
        raise UsageError(f"repository name must not be more than {_MAX_PATH_LEN} characters")
    if digest is not None:
        _check_digest(digest, text)
    elif tag is None:
        tag = default_tag
    return Reference(name, tag, digest)


def looks_like_id(text: str) -> bool:
    """True for an image ID or ID prefix: 1-64 lowercase hex, optionally `sha256:`-prefixed."""
    hex_ = text[len("sha256:") :] if text.startswith("sha256:") else text
    return 0 < len(hex_) <= 64 and set(hex_) <= _HEX


def _simple_reference(text: str, default_tag: str | None) -> Reference | None:
    """A Docker Hub name of one path component, with or without a tag (`busybox`, `app:1.0`),
    read without re; None for any other shape (or a wrong one): parse_reference's grammar then
    decides, and names the error. tests/unit/test_reference.py holds the two to the same answers."""
    name, colon, tag = text.partition(":")
    if not _component(name) or len(name) == 64 and set(name) <= _HEX or len("library/" + name) > _MAX_PATH_LEN:
        return None
    if colon:
        if not (0 < len(tag) <= 128 and set(tag) <= _TAG_CHARS and tag[0] not in ".-"):
            return None
        return Reference(name, tag, None)
    return Reference(name, default_tag, None)


def _component(text: str) -> bool:
    """A path component: lowercase letters and digits, in runs joined by `.`, `_`, `__` or dashes."""
    if not text or text[0] not in _LOWER_ALNUM or text[-1] not in _LOWER_ALNUM:
        return False
    separator = ""
    for char in text:
        if char in _LOWER_ALNUM:
            if separator and separator not in (".", "_", "__") and set(separator) != {"-"}:
                return False
            separator = ""
        elif char in "._-":
            separator += char
        else:
            return False
    return True


def _split_domain(name: str) -> tuple[str | None, str]:
    first, sep, rest = name.partition("/")
    if not sep:
        # A lone component is always a path, even `localhost` or `example.com`.
        return None, name
    if first == "localhost" or "." in first or ":" in first or first.lower() != first:
        return first, rest
    return None, name


def _docker_remote_path(text: str) -> str:
    """The path docker would use on its registry: Hub names gain `library/`."""
    domain, path = _split_domain(text)
    if domain in (None, "docker.io", "index.docker.io") and "/" not in path:
        return "library/" + path
    return path


def _check_digest(digest: str, text: str) -> None:
    algorithm, hex_ = digest.split(":", 1)
    want = _DIGEST_HEX_LEN.get(algorithm)
    if want is None:
        raise UsageError(f'unsupported digest algorithm: "{text}"')
    if len(hex_) != want:
        raise UsageError(f'invalid checksum digest length: "{text}"')
    if not set(hex_) <= _HEX:
        raise UsageError(f'invalid checksum digest format: "{text}"')
