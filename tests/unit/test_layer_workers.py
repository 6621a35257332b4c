"""Which of load's layers a worker forks a file writer for (layerworkers._writers_help): only
those that would leave a core spare; beside busy workers, a writer only adds forks and pipes."""

from __future__ import annotations

import pytest

from minirun.distribution.layerworkers import _writers_help

T, F = True, False


@pytest.mark.parametrize(
    ("sizes", "workers", "expected"),
    [
        ([30] * 10, 2, [F] * 9 + [T]),  # cores busy until the last layer runs on alone
        ([30] * 10, 4, [F] * 7 + [T] * 3),  # the last three: fewer left than workers
        ([100, 10, 10], 2, [T, F, T]),  # the first outweighs the rest: it ends alone
        ([100, 60, 50], 2, [F, F, T]),  # the rest keep the other core busy as long
        ([100, 100], 2, [F, F]),  # two equal layers, two cores: nothing spare
        ([100, 60], 2, [T, F]),
        ([100, 20, 20, 20, 20], 4, [T, F, F, F, T]),  # the first round's layers start beside a full queue
        ([5, 4], 4, [T, T]),  # fewer layers than workers: cores spare from the start
        ([7], 2, [T]),
        ([], 2, []),
    ],
)
def test_writers_only_where_a_core_goes_spare(sizes, workers, expected):
    assert _writers_help(sizes, workers) == expected
