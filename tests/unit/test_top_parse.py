"""`top`'s reading of the host's ps output, as docker's parsePSOutput does it (containers/top.py)."""

from __future__ import annotations

import pytest

from minirun.containers.top import check_ps_args, parse_ps_output
from minirun.errors import MinirunError, UsageError

PS_EF = """UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 09:00 ?        00:00:01 /sbin/init
root        4242       1  0 09:01 ?        00:00:00 sleep 1000
daemon      4243    4242  0 09:01 ?        00:00:00 sh -c echo  a   b
"""


def test_only_the_containers_rows_and_overhanging_fields_join_the_last_column():
    titles, rows = parse_ps_output(PS_EF, {4242, 4243})
    assert titles == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert rows == [
        ["root", "4242", "1", "0", "09:01", "?", "00:00:00", "sleep 1000"],
        ["daemon", "4243", "4242", "0", "09:01", "?", "00:00:00", "sh -c echo a b"],
    ]


def test_thread_lines_follow_their_process():
    output = "PID TID CMD\n4242 - sleep\n- 4242 -\n1 - init\n- 1 -\n"
    assert parse_ps_output(output, {4242})[1] == [["4242", "-", "sleep"], ["-", "4242", "-"]]


def test_output_without_a_pid_column_or_with_a_bad_pid_is_an_error():
    with pytest.raises(MinirunError, match="Couldn't find PID field"):
        parse_ps_output("USER CMD\nroot x\n", {1})
    with pytest.raises(MinirunError, match="Unexpected pid 'x1'"):
        parse_ps_output("PID CMD\nx1 y\n", {1})


def test_a_column_renamed_pid_is_refused():
    check_ps_args(["-o", "pid=PID,user"])  # the pid column itself may be titled PID
    with pytest.raises(UsageError, match='specifying "user=PID" is not allowed'):
        check_ps_args(["-o", "user=PID"])
