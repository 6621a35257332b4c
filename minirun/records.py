"""Plain records for the start paths: what a dataclass gives (fields from the class's annotations,
defaults, keyword or positional construction, comparison and repr by value) without `dataclasses`,
which imports `inspect`: ~9 ms of every `run`, `exec`, `ps` and `images` that loaded it.

    class Bind(Record):
        source: str
        target: str
        readonly: bool
        DEFAULTS = {"readonly": False}   # a callable (list, dict, a lambda) makes a fresh value

Records are mutable, and so unhashable, as a dataclass without frozen=True."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms of a start
if TYPE_CHECKING:
    from typing import Any, ClassVar


class Record:
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    FIELDS: ClassVar[tuple[str, ...]] = ()  # the class's own annotations, in order

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__annotations__", {})
        cls.FIELDS = tuple(name for name, kind in own.items() if not str(kind).startswith("ClassVar"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        name = type(self).__name__
        if len(args) > len(self.FIELDS):
            raise TypeError(f"{name} takes {len(self.FIELDS)} fields, {len(args)} given")
        values = dict(zip(self.FIELDS, args))
        for key, value in kwargs.items():
            if key not in self.FIELDS or key in values:
                raise TypeError(f"{name}: unexpected or repeated field {key!r}")
            values[key] = value
        for field in self.FIELDS:
            if field in values:
                value = values[field]
            elif field in self.DEFAULTS:
                default = self.DEFAULTS[field]
                value = default() if callable(default) else default
            else:
                raise TypeError(f"{name} needs its field {field!r}")
            setattr(self, field, value)

    def as_dict(self) -> dict[str, Any]:
        """The fields and their values (shallow, as the JSON of a record)."""
        return {field: getattr(self, field) for field in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, field) == getattr(other, field) for field in self.FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable: as a dataclass that is not frozen

    def __repr__(self) -> str:
        shown = ", ".join(f"{field}={getattr(self, field)!r}" for field in self.FIELDS)
        return f"{type(self).__name__}({shown})"
