"""errors.report: one `minirun: error: ...` line per error, whatever the message holds."""

from __future__ import annotations

import pytest

from minirun.errors import EXIT_RUNTIME, BadArchive, MinirunError, NotFound, one_line, report


def reported(exc: BaseException, capsys) -> tuple[int, str]:
    code = report(exc)
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err


@pytest.mark.parametrize(
    "exc, line",
    [
        (
            BadArchive('invalid reference format: "x:1\nLoaded image: y:1"'),
            r'minirun: error: invalid reference format: "x:1\nLoaded image: y:1"',
        ),
        (MinirunError("a\r\nb\x1b[31mred\x1b[0m\x00"), r"minirun: error: a\r\nb\x1b[31mred\x1b[0m\x00"),
        (
            NotFound("bidi \u202egnp.exe and a line separator\u2028here"),
            r"minirun: error: bidi \u202egnp.exe and a line separator\u2028here",
        ),
        (OSError(2, "No such file or directory", "/tmp/a\nb"), r"minirun: error: No such file or directory: /tmp/a\nb"),
        (RuntimeError("two\nlines"), r"minirun: error: internal error: RuntimeError: two\nlines (rerun with --debug)"),
        (MinirunError("name \udcff from surrogateescape"), r"minirun: error: name \udcff from surrogateescape"),
    ],
)
def test_every_error_is_exactly_one_printable_line(exc, line, capsys):
    code, err = reported(exc, capsys)
    assert err == line + "\n"
    assert code == EXIT_RUNTIME


def test_plain_messages_are_printed_as_they_are(capsys):
    assert reported(MinirunError('No such image: "café:1" (tab\tstays escaped)', exit_code=1), capsys) == (
        1,
        'minirun: error: No such image: "café:1" (tab\\tstays escaped)\n',
    )
    assert one_line("nothing to escape: ü, 中文, \\n as typed") == "nothing to escape: ü, 中文, \\n as typed"


def test_a_childs_report_raises_the_same_kind_in_the_parent():
    from minirun.childfailure import encode_report, parse_report
    from minirun.errors import DamagedRecord, Forbidden, error_kind

    forbidden = parse_report(encode_report(125, "container rootfs is marked read-only", error_kind(Forbidden("x"))))
    assert type(forbidden) is Forbidden and (forbidden.exit_code, forbidden.message) == (
        125,
        "container rootfs is marked read-only",
    )
    # A kind that takes more than a message (or none known here) comes back as a MinirunError with the text.
    damaged = parse_report(encode_report(125, "damaged record x: y", error_kind(DamagedRecord("x", "y"))))
    assert type(damaged) is MinirunError and damaged.message == "damaged record x: y"
    assert type(parse_report(b"3:NoSuchKind\nboom")) is MinirunError
    old = parse_report(b"127\nnot found")  # an older process's report: no kind
    assert type(old) is MinirunError and (old.exit_code, old.message) == (127, "not found")
