"""minirun.records: what the start paths use instead of dataclasses."""

from __future__ import annotations

import pytest

from minirun.records import Record


class Point(Record):
    x: int
    y: int
    tags: list[str]
    DEFAULTS = {"y": 0, "tags": list}


def test_fields_defaults_and_fresh_mutable_defaults():
    a, b = Point(1), Point(x=1, y=0)
    assert (a.x, a.y, a.tags) == (1, 0, []) and a == b and Point.FIELDS == ("x", "y", "tags")
    a.tags.append("moved")
    assert b.tags == [] and Point(1).tags == []  # a callable default makes a new list each time
    assert a != b and Point(2) != Point(1)
    assert repr(Point(1, 2, ["t"])) == "Point(x=1, y=2, tags=['t'])"
    assert Point(1, 2, ["t"]).as_dict() == {"x": 1, "y": 2, "tags": ["t"]}


@pytest.mark.parametrize(
    "args, kwargs, needle",
    [
        ((), {}, "needs its field 'x'"),
        ((1, 2, [], 4), {}, "takes 3 fields"),
        ((1,), {"x": 2}, "repeated"),
        ((1,), {"z": 0}, "'z'"),
    ],
)
def test_bad_construction_is_a_type_error(args, kwargs, needle):
    with pytest.raises(TypeError, match=needle):
        Point(*args, **kwargs)


def test_records_are_unhashable_as_mutable_dataclasses():
    with pytest.raises(TypeError):
        hash(Point(1))
