"""Config instructions apply to an image config as `docker commit -c` / `docker import -c`
apply them (moby's builder/dockerfile dispatchers and shell lexer)."""

from __future__ import annotations

import pytest

from minirun.errors import UsageError
from minirun.image.instructions import (
    apply_changes,
    env_set,
    parse_json_or_shell,
    parse_key_values,
    process_word,
    process_words,
    split_instruction,
)

# -- split_instruction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, expected",
    [
        ("CMD echo hi", ("CMD", "echo hi")),
        ("  cmd   echo  hi  ", ("CMD", "echo  hi")),
        ("Workdir\t/x", ("WORKDIR", "/x")),
        ("ENTRYPOINT", ("ENTRYPOINT", "")),
    ],
)
def test_split_instruction(line: str, expected: tuple[str, str]) -> None:
    assert split_instruction(line) == expected


def test_split_instruction_refuses_blank() -> None:
    with pytest.raises(UsageError):
        split_instruction("   ")


# -- parse_json_or_shell -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        ('["sh", "-c", "echo hi"]', (["sh", "-c", "echo hi"], True)),
        ("[]", ([], True)),
        # Shell form keeps the text verbatim: quotes and inner spacing included.
        ('echo  "hi there"', (['echo  "hi there"'], False)),
        # Not JSON, so shell form, even though it starts with a bracket.
        ("[ -f /x ] && echo y", (["[ -f /x ] && echo y"], False)),
        ("['single']", (["['single']"], False)),
        ("", ([], False)),
    ],
)
def test_parse_json_or_shell(args: str, expected: tuple[list[str], bool]) -> None:
    assert parse_json_or_shell(args) == expected


def test_json_array_of_non_strings_is_an_error() -> None:
    with pytest.raises(UsageError, match="arrays must be comprised of strings only"):
        parse_json_or_shell('["sleep", 5]')


# -- parse_key_values, process_word ----------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        ("A=1", [("A", "1")]),
        ("A=1 B=\"v 2\" C='x y'", [("A", "1"), ("B", "v 2"), ("C", "x y")]),
        (r"A=a\ b B=\"q\"", [("A", "a b"), ("B", '"q"')]),
        ('A="say \\"hi\\""', [("A", 'say "hi"')]),
        ('"spaced key"=v', [("spaced key", "v")]),
        ("A=", [("A", "")]),
        # Legacy `KEY value`: the value is the rest, inner spacing kept.
        ("GREETING hello   world", [("GREETING", "hello   world")]),
        ('K "quoted value"', [("K", "quoted value")]),
    ],
)
def test_parse_key_values(args: str, expected: list[tuple[str, str]]) -> None:
    assert parse_key_values(args) == expected


def test_parse_key_values_substitutes_from_env() -> None:
    env = ["HOME=/root", "NAME=app"]
    assert parse_key_values("P=$HOME/bin Q=${NAME}-x R='$HOME' S=\\$HOME", env) == [
        ("P", "/root/bin"),
        ("Q", "app-x"),
        ("R", "$HOME"),
        ("S", "$HOME"),
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        ("", "ENV requires at least one argument"),
        ("ONLYKEY", "ENV must have two arguments"),
        ("A=1 B", 'can\'t find = in "B"'),
        ("=value", "ENV names can not be blank"),
        ('A="open', "looking for matching double-quote"),
        ("A='open", "looking for matching single-quote"),
    ],
)
def test_parse_key_values_errors(args: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_key_values(args)


def test_parse_key_values_names_the_instruction() -> None:
    with pytest.raises(UsageError, match="^LABEL requires at least one argument$"):
        parse_key_values("  ", instruction="LABEL")


@pytest.mark.parametrize(
    "word, expected",
    [
        ("${SET:-default}", "value"),
        ("${UNSET:-default}", "default"),
        ("${EMPTY:-default}", "default"),
        ("${SET:+other}", "other"),
        ("${UNSET:+other}", ""),
        ("${UNSET:-${SET}}", "value"),
        ("$UNSET.", "."),
        ("cost: $", "cost: $"),
        ("$1x", "x"),
        ('"$SET and \\$SET"', "value and $SET"),
        # Inside double quotes only ", $ and \ can be escaped; other backslashes stay.
        ('"a\\nb"', "a\\nb"),
        ("trailing\\", "trailing"),
    ],
)
def test_process_word(word: str, expected: str) -> None:
    assert process_word(word, ["SET=value", "EMPTY="]) == expected


@pytest.mark.parametrize(
    "word, message",
    [
        ("${", "missing '}'"),
        ("${}", "bad substitution"),
        ("${X", "missing ':' in substitution"),
        ("${X:-oops", "missing '}'"),
        ("${X:?err}", r"unsupported modifier \(\?\)"),
    ],
)
def test_process_word_errors(word: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        process_word(word)


def test_process_words_splits_substitutions_but_not_quotes() -> None:
    assert process_words('$PORTS "a b" c\\ d', ["PORTS=80  443"]) == ["80", "443", "a b", "c d"]


def test_env_set_replaces_in_place_or_appends() -> None:
    env = ["PATH=/bin", "A=1", "A=2"]
    assert env_set(env, "A", "x") == ["PATH=/bin", "A=x", "A=2"]
    assert env_set(env, "B", "y=z") == ["PATH=/bin", "A=1", "A=2", "B=y=z"]
    assert env == ["PATH=/bin", "A=1", "A=2"]


# -- apply_changes ---------------------------------------------------------------------------


def test_cmd_exec_and_shell_forms() -> None:
    assert apply_changes({}, ['CMD ["sh"]']) == {"Cmd": ["sh"]}
    assert apply_changes({}, ["CMD echo hi"]) == {"Cmd": ["/bin/sh", "-c", "echo hi"]}
    assert apply_changes({}, ["CMD []"]) == {"Cmd": []}


def test_shell_form_uses_the_image_shell() -> None:
    config = {"Shell": ["/bin/bash", "-o", "pipefail", "-c"]}
    assert apply_changes(config, ["CMD echo hi"])["Cmd"] == ["/bin/bash", "-o", "pipefail", "-c", "echo hi"]


def test_entrypoint_resets_inherited_cmd() -> None:
    result = apply_changes({"Cmd": ["sh"]}, ['ENTRYPOINT ["/app"]'])
    assert result == {"Entrypoint": ["/app"]}


def test_entrypoint_keeps_cmd_set_by_the_same_changes() -> None:
    result = apply_changes({"Cmd": ["sh"]}, ['CMD ["--help"]', "ENTRYPOINT /app"])
    assert result == {"Cmd": ["--help"], "Entrypoint": ["/bin/sh", "-c", "/app"]}
    # In the other order the ENTRYPOINT clears the old CMD and the CMD sets the new one.
    assert apply_changes({"Cmd": ["sh"]}, ['ENTRYPOINT ["/app"]', 'CMD ["-v"]']) == {
        "Entrypoint": ["/app"],
        "Cmd": ["-v"],
    }


def test_empty_entrypoint_clears_it() -> None:
    assert apply_changes({"Entrypoint": ["/app"], "Cmd": ["x"]}, ["ENTRYPOINT []"]) == {}


def test_env_new_and_legacy_forms() -> None:
    result = apply_changes({"Env": ["PATH=/bin", "A=old"]}, ['ENV A=new B="v 2"', "ENV C c value"])
    assert result["Env"] == ["PATH=/bin", "A=new", "B=v 2", "C=c value"]


def test_env_values_see_the_env_before_the_instruction() -> None:
    # docker's documented example: abc=bye def=$abc gives def=hello.
    result = apply_changes({}, ["ENV abc=hello", "ENV abc=bye def=$abc", "ENV ghi=$abc"])
    assert result["Env"] == ["abc=bye", "def=hello", "ghi=bye"]


def test_label_merges_into_existing_labels() -> None:
    result = apply_changes({"Labels": {"a": "1"}}, ['LABEL b=2 "c d"="e f"', "LABEL a=3"])
    assert result["Labels"] == {"a": "3", "b": "2", "c d": "e f"}


def test_workdir_relative_joins_previous_absolute_kept() -> None:
    assert apply_changes({}, ["WORKDIR app"])["WorkingDir"] == "/app"
    assert apply_changes({"WorkingDir": "/srv"}, ["WORKDIR app/../data"])["WorkingDir"] == "/srv/data"
    assert apply_changes({"WorkingDir": "/srv"}, ["WORKDIR a", "WORKDIR b"])["WorkingDir"] == "/srv/a/b"
    # docker stores an absolute WORKDIR exactly as written.
    assert apply_changes({"WorkingDir": "/srv"}, ["WORKDIR /x/../y"])["WorkingDir"] == "/x/../y"
    assert apply_changes({"Env": ["D=/data"]}, ["WORKDIR $D/sub"])["WorkingDir"] == "/data/sub"


def test_user() -> None:
    assert apply_changes({}, ["USER nobody"])["User"] == "nobody"
    assert apply_changes({"User": "root"}, ["USER 1000:1000"])["User"] == "1000:1000"


def test_expose() -> None:
    result = apply_changes({"ExposedPorts": {"22/tcp": {}}}, ["EXPOSE 80 443/UDP 9000-9001/sctp 53/"])
    assert result["ExposedPorts"] == {
        "22/tcp": {},
        "80/tcp": {},
        "443/udp": {},
        "9000/sctp": {},
        "9001/sctp": {},
        "53/tcp": {},
    }


def test_expose_variable_may_hold_several_ports() -> None:
    result = apply_changes({"Env": ["PORTS=80 81"]}, ["EXPOSE $PORTS"])
    assert result["ExposedPorts"] == {"80/tcp": {}, "81/tcp": {}}


def test_volume_json_and_list_forms() -> None:
    result = apply_changes({"Volumes": {"/old": {}}}, ['VOLUME ["/data"]', "VOLUME /a /b"])
    assert result["Volumes"] == {"/old": {}, "/data": {}, "/a": {}, "/b": {}}


@pytest.mark.parametrize("sig", ["SIGTERM", "sigusr1", "KILL", "9", "SIGRTMIN+3", "RTMAX-1"])
def test_stopsignal_kept_as_written(sig: str) -> None:
    assert apply_changes({}, [f"STOPSIGNAL {sig}"])["StopSignal"] == sig


def test_keywords_are_case_insensitive_and_comments_skipped() -> None:
    result = apply_changes({}, ["# a comment", "", "env A=1", "Cmd true", "  workdir /w  "])
    assert result == {"Env": ["A=1"], "Cmd": ["/bin/sh", "-c", "true"], "WorkingDir": "/w"}


def test_a_change_may_hold_several_lines() -> None:
    assert apply_changes({}, ["ENV A=1\nUSER u"]) == {"Env": ["A=1"], "User": "u"}


def test_input_config_is_not_modified() -> None:
    config = {"Env": ["A=1"], "Labels": {"x": "y"}, "Cmd": ["sh"]}
    apply_changes(config, ["ENV A=2", "LABEL x=z", "ENTRYPOINT /e"])
    assert config == {"Env": ["A=1"], "Labels": {"x": "y"}, "Cmd": ["sh"]}


def test_no_changes_returns_an_equal_copy() -> None:
    config = {"Cmd": ["sh"]}
    result = apply_changes(config, [])
    assert result == config and result is not config


@pytest.mark.parametrize(
    "change, message",
    [
        ("FOO bar", "^foo is not a valid change command$"),
        ("RUN echo hi", "^run is not a valid change command$"),
        ("FROM busybox", "^from is not a valid change command$"),
        ("HEALTHCHECK NONE", "^HEALTHCHECK is not supported"),
        ('CMD ["a", 1]', "arrays must be comprised of strings only"),
        ("ENV", "^ENV requires at least one argument$"),
        ("ENV A=1 B", '^ENV: Syntax error - can\'t find = in "B"'),
        ("LABEL =x", "^LABEL names can not be blank$"),
        ('LABEL a="open', "^LABEL: failed to process"),
        ("WORKDIR", "^WORKDIR requires exactly one argument$"),
        ("WORKDIR $UNSET", "^WORKDIR: cannot normalize nothing$"),
        ("USER", "^USER requires exactly one argument$"),
        ("EXPOSE", "^EXPOSE requires at least one argument$"),
        ("EXPOSE http", "^EXPOSE: invalid containerPort: http$"),
        ("EXPOSE 70000", "^EXPOSE: invalid containerPort: 70000$"),
        ("EXPOSE 90-80", "^EXPOSE: invalid range specified"),
        ("EXPOSE 80/icmp", "^EXPOSE: invalid proto: icmp$"),
        ("VOLUME", "^VOLUME requires at least one argument$"),
        ("VOLUME []", "^VOLUME requires at least one argument$"),
        ('VOLUME [""]', "^VOLUME specified can not be an empty string$"),
        ("STOPSIGNAL", "^STOPSIGNAL requires exactly one argument$"),
        ("STOPSIGNAL SIGNOPE", "^STOPSIGNAL: invalid signal: SIGNOPE$"),
        ("STOPSIGNAL 0", "^STOPSIGNAL: invalid signal: 0$"),
    ],
)
def test_bad_changes(change: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        apply_changes({}, [change])


def test_a_bad_change_applies_nothing() -> None:
    config = {"Env": ["A=1"]}
    with pytest.raises(UsageError):
        apply_changes(config, ["ENV A=2", "BOGUS"])
    assert config == {"Env": ["A=1"]}


def test_deeply_nested_json_form_is_shell_form_not_a_crash():
    from minirun.image.instructions import parse_json_or_shell

    text = "[" * 100_000
    assert parse_json_or_shell(text) == ([text], False)
