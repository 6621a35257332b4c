"""A Dockerfile's stages planned before anything runs, HEALTHCHECK as docker records it, and the Go
durations both use."""

from __future__ import annotations

import pytest

from minirun.build.builder import go_quote_rune, health_text
from minirun.build.dockerfile import parse_dockerfile, plan_stages, split_global_args
from minirun.errors import UsageError
from minirun.humanize import go_duration, parse_go_duration
from minirun.image.instructions import parse_healthcheck


def plan(text: str, target: str = "", args: dict[str, str] | None = None):
    values = {"BASE": "busybox", **(args or {})}

    def expand(word: str) -> str:
        for key, value in values.items():
            word = word.replace("${" + key + "}", value).replace("$" + key, value)
        return word

    global_args, rest = split_global_args(parse_dockerfile(text))
    return plan_stages(global_args, rest, expand, target)


MULTI = """\
ARG BASE
FROM $BASE AS Deps
RUN fetch
FROM deps AS build
RUN make
FROM busybox AS docs
RUN make docs
FROM scratch AS test
COPY --from=1 /out /out
FROM alpine
COPY --from=build /out/app /app
COPY --from=nginx:1.25 /etc/nginx /etc/nginx
"""


def test_stages_and_what_the_target_needs():
    built = plan(MULTI)
    assert [(s.name, s.base, s.base_stage) for s in built.stages] == [
        ("deps", "busybox", None),
        ("build", "deps", 0),  # a stage by its (case-insensitive) name
        ("docs", "busybox", None),
        ("test", "scratch", None),
        ("", "alpine", None),
    ]
    assert built.target == 4 and built.needed == [0, 1, 4]  # docs and test are skipped
    assert built.stages[4].uses == {1}  # an image in --from is no stage
    assert built.steps() == 1 + 2 + 2 + 3
    assert plan(MULTI, target="TEST").needed == [0, 1, 3]  # --from=1 by index
    assert plan(MULTI, target="docs").needed == [2]


@pytest.mark.parametrize(
    "text, target, message",
    [
        (MULTI, "nope", 'target stage "nope" could not be found'),
        ("FROM busybox AS a\nFROM busybox AS A\n", "", 'duplicate stage name "a"'),
        ("FROM busybox AS 1st\n", "", 'invalid name for build stage: "1st"'),
        ("FROM busybox\nCOPY --from=0 /a /b\n", "", "invalid from flag value 0: refers to current or future"),
        ("FROM busybox\nCOPY --from=next /a /b\nFROM busybox AS next\n", "", "invalid from flag value next"),
        ("ARG BASE=\nFROM ${NOTHING}\n", "", "base name (${NOTHING}) should not be blank"),
    ],
)
def test_plan_errors(text, target, message):
    with pytest.raises(UsageError) as info:
        plan(text, target, {"NOTHING": ""})
    assert message in info.value.message


def test_flags_and_instructions_the_parser_takes_or_refuses():
    (copy,) = [i for i in parse_dockerfile("FROM a\nCOPY --from=b --chown=1:2 /x /y\n") if i.keyword == "COPY"]
    assert (copy.flag("from"), copy.flag("chown"), copy.args) == ("b", "1:2", "/x /y")
    for text, message in [
        ("FROM a\nHEALTHCHECK --interval=1x CMD true\n", 'line 2: time: unknown unit "x" in duration "1x"'),
        ("FROM a\nHEALTHCHECK --color=red CMD true\n", "line 2: Unknown flag: color"),
        ("FROM a\nHEALTHCHECK NONE --x\n", "line 2: HEALTHCHECK NONE takes no arguments"),
        ("FROM a\nONBUILD RUN x\n", "line 2: ONBUILD is not supported by minirun build"),
        ("FROM a\nCOPY --chmod=755 x /\n", "line 2: COPY --chmod is not supported by minirun build"),
    ]:
        with pytest.raises(UsageError) as info:
            parse_dockerfile(text)
        assert info.value.message == f"Dockerfile parse error {message}"


def test_healthcheck_as_docker_records_it():
    health = parse_healthcheck(
        "CMD curl -f http://localhost/ || exit 1",
        {"interval": "1m30s", "timeout": "3s", "start-period": "0", "start-interval": "500ms", "retries": "3"},
    )
    assert health == {
        "Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
        "Interval": 90_000_000_000,
        "Timeout": 3_000_000_000,
        "StartInterval": 500_000_000,
        "Retries": 3,
    }
    assert (
        health_text(health)
        == '&{["CMD-SHELL" "curl -f http://localhost/ || exit 1"] "1m30s" "3s" "0s" "500ms" \'\\x03\'}'
    )
    assert parse_healthcheck('cmd ["/bin/check", "--fast"]') == {"Test": ["CMD", "/bin/check", "--fast"]}
    assert parse_healthcheck("none") == {"Test": ["NONE"]}
    assert health_text({"Test": ["NONE"]}) == '&{["NONE"] "0s" "0s" "0s" "0s" \'\\x00\'}'


@pytest.mark.parametrize(
    "args, flags, message",
    [
        ("", {}, "HEALTHCHECK requires at least one argument"),
        ("NONE now", {}, "HEALTHCHECK NONE takes no arguments"),
        ("RUN true", {}, 'Unknown type "RUN" in HEALTHCHECK (try CMD)'),
        ("CMD", {}, "Missing command after HEALTHCHECK CMD"),
        ("CMD true", {"timeout": "10us"}, 'Interval "timeout" cannot be less than 1ms'),
        ("CMD true", {"interval": "-1s"}, 'Interval "interval" cannot be less than 1ms'),
        ("CMD true", {"retries": "-2"}, "--retries cannot be negative (-2)"),
        ("CMD true", {"retries": "three"}, 'strconv.ParseInt: parsing "three": invalid syntax'),
    ],
)
def test_healthcheck_errors(args, flags, message):
    with pytest.raises(UsageError) as info:
        parse_healthcheck(args, flags)
    assert info.value.message == message


@pytest.mark.parametrize(
    "text, ns, shown",
    [
        ("0", 0, "0s"),
        ("30s", 30 * 10**9, "30s"),
        ("5m", 300 * 10**9, "5m0s"),
        ("1h", 3600 * 10**9, "1h0m0s"),
        ("1.5s", 1_500_000_000, "1.5s"),
        (".5ms", 500_000, "500µs"),
        ("2h45m10.5s", (2 * 3600 + 45 * 60 + 10) * 10**9 + 5 * 10**8, "2h45m10.5s"),
        ("-90s", -90 * 10**9, "-1m30s"),
        ("7ns", 7, "7ns"),
    ],
)
def test_go_durations(text, ns, shown):
    assert parse_go_duration(text) == ns
    assert go_duration(ns) == shown


@pytest.mark.parametrize(
    "text, message",
    [
        ("5", 'time: missing unit in duration "5"'),
        ("5d", 'time: unknown unit "d" in duration "5d"'),
        ("", 'time: invalid duration ""'),
        ("x", 'time: invalid duration "x"'),
        ("9999999999h", 'time: invalid duration "9999999999h"'),
    ],
)
def test_go_duration_errors(text, message):
    with pytest.raises(UsageError) as info:
        parse_go_duration(text)
    assert info.value.message == message


def test_go_quote_rune():
    assert [go_quote_rune(n) for n in (0, 3, 10, 39, 65, 92)] == [
        "'\\x00'",
        "'\\x03'",
        "'\\n'",
        "'\\''",
        "'A'",
        "'\\\\'",
    ]
