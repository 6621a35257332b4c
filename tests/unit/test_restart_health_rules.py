"""The pure rules of restart policies and health checks: docker's parsing, back-off, boot
choice, health status transitions, durations and the merge of a healthcheck over the image's."""

from __future__ import annotations

import pytest

from minirun.cli.runargs import parse_run_args
from minirun.containers import restartpolicy as rp
from minirun.containers.health import next_status, spec_text
from minirun.containers.healthconfig import from_flags, merged
from minirun.containers.healthprobe import probe_argv
from minirun.errors import UsageError
from minirun.humanize import go_duration, parse_go_duration

ALWAYS = {"Name": "always", "MaximumRetryCount": 0}


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("no", {"Name": "no", "MaximumRetryCount": 0}),
        ("always", ALWAYS),
        ("unless-stopped", {"Name": "unless-stopped", "MaximumRetryCount": 0}),
        ("on-failure", {"Name": "on-failure", "MaximumRetryCount": 0}),
        ("on-failure:5", {"Name": "on-failure", "MaximumRetryCount": 5}),
    ],
)
def test_policies_parse_as_docker_reads_them(text, policy):
    assert rp.parse_policy(text) == policy


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sometimes", "unknown policy 'sometimes'"),
        (":3", "no policy provided before colon"),
        ("on-failure:x", "maximum retry count must be an integer"),
        ("on-failure:-1", "maximum retry count cannot be negative"),
        ("always:2", "can only be used with 'on-failure'"),
    ],
)
def test_bad_policies_are_refused_naming_the_fault(text, message):
    with pytest.raises(UsageError, match=message):
        rp.parse_policy(text)


def test_rm_with_a_restart_policy_is_refused_as_docker_does():
    with pytest.raises(UsageError, match="cannot specify both --restart and --rm"):
        parse_run_args(["--rm", "--restart", "always", "busybox"])
    assert parse_run_args(["--rm", "--restart", "no", "busybox"]).restart_policy == {}


def test_back_off_doubles_from_100_ms_to_a_minute_and_resets_after_a_long_run():
    delays, delay = [], 0
    for count in range(12):
        delay = rp.next_delay(ALWAYS, 0, count, delay, 0.5, None)
        delays.append(delay)
    assert delays[:4] == [100, 200, 400, 800] and delays[-1] == 60_000 and max(delays) == 60_000
    assert rp.next_delay(ALWAYS, 0, 12, 60_000, 10.0, None) == 100


def test_who_restarts_what():
    on_failure_2 = {"Name": "on-failure", "MaximumRetryCount": 2}
    assert rp.next_delay(on_failure_2, 1, 0, 0, 0, None) and rp.next_delay(on_failure_2, 1, 1, 100, 0, None)
    assert rp.next_delay(on_failure_2, 1, 2, 200, 0, None) == 0  # exactly two restarts
    assert rp.next_delay(on_failure_2, 0, 0, 0, 0, None) == 0  # success is not a failure
    assert rp.next_delay({"Name": "on-failure"}, 1, 99, 0, 0, None)  # no limit
    assert rp.next_delay({"Name": "no"}, 1, 0, 0, 0, None) == 0
    unless = {"Name": "unless-stopped"}
    for request in (rp.STOP, rp.RESTART, rp.SHUTDOWN):
        assert rp.next_delay(ALWAYS, 1, 0, 0, 0, request) == 0
    # a kill with another signal: docker still restarts `always`, not `unless-stopped`
    assert rp.next_delay(ALWAYS, 1, 0, 0, 0, rp.SIGNAL) and rp.next_delay(unless, 1, 0, 0, 0, rp.SIGNAL) == 0


def test_boot_starts_always_and_unless_stopped_not_stopped_by_the_user():
    started = {"StartedAt": "2026-01-01T00:00:00Z"}
    unless = {"Name": "unless-stopped"}
    assert rp.starts_at_boot(ALWAYS, rp.STOP, started)  # docker: always comes back at a daemon start
    assert rp.starts_at_boot(unless, None, started) and rp.starts_at_boot(unless, rp.SHUTDOWN, started)
    assert not rp.starts_at_boot(unless, rp.STOP, started) and not rp.starts_at_boot(unless, rp.SIGNAL, started)
    assert not rp.starts_at_boot({"Name": "on-failure"}, None, started)
    assert not rp.starts_at_boot(ALWAYS, None, {"StartedAt": rp.NEVER})  # never started: left created


def test_health_status_follows_docker():
    assert next_status("starting", 0, 0, 3, False) == ("healthy", 0)
    assert next_status("starting", 0, 1, 3, True) == ("starting", 0)  # within the start period: not counted
    assert next_status("healthy", 0, 1, 2, False) == ("healthy", 1)
    assert next_status("healthy", 1, 7, 2, False) == ("unhealthy", 2)  # any non-zero code fails
    assert next_status("unhealthy", 5, 0, 2, False) == ("healthy", 0)


@pytest.mark.parametrize(
    ("text", "ns"),
    [("30s", 30_000_000_000), ("200ms", 200_000_000), ("1m30s", 90_000_000_000), ("1.5h", 5_400_000_000_000), ("0", 0)],
)
def test_go_durations_both_ways(text, ns):
    assert parse_go_duration(text) == ns
    assert parse_go_duration(go_duration(ns)) == ns


def test_go_duration_text_is_gos():
    assert [go_duration(n) for n in (30_000_000_000, 1_500_000_000, 200_000_000, 60_000_000_000, 0)] == [
        "30s",
        "1.5s",
        "200ms",
        "1m0s",
        "0s",
    ]
    for bad in ("", "10", "1x", "s", "--1s"):
        with pytest.raises(UsageError, match="time: "):
            parse_go_duration(bad)


def test_health_flags_and_the_image_merge_field_by_field():
    image = {"Test": ["CMD", "check"], "Interval": 5_000_000_000, "Retries": 4}
    flags = from_flags("", {"health_interval": "1s", "health_timeout": None}, 0, False)
    assert merged(flags, image) == {
        **image,
        "Interval": 1_000_000_000,
        "Timeout": 0,
        "StartPeriod": 0,
        "StartInterval": 0,
    }
    shell = from_flags("curl -f http://localhost/", {}, 2, False)
    assert merged(shell, image)["Test"] == ["CMD-SHELL", "curl -f http://localhost/"]
    assert merged(shell, image)["Retries"] == 2
    assert merged(from_flags("", {}, 0, True), image)["Test"] == ["NONE"]
    assert from_flags("", {"health_interval": None}, 0, False) is None
    assert merged(None, image) == image


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("true", {}, 0, True), "--no-healthcheck conflicts with --health-\\* options"),
        (("true", {"health_interval": "-1s"}, 0, False), "--health-interval cannot be negative"),
        (("true", {"health_timeout": "soon"}, 0, False), 'invalid argument "soon" for "--health-timeout"'),
        (("true", {}, -1, False), "--health-retries cannot be negative"),
    ],
)
def test_bad_health_flags_are_refused(args, message):
    with pytest.raises(UsageError, match=message):
        from_flags(*args)


def test_a_check_below_a_millisecond_is_refused():
    with pytest.raises(UsageError, match="Interval in Healthcheck cannot be less than 1ms"):
        merged(from_flags("true", {"health_interval": "500us"}, 0, False), None)


def test_what_a_probe_runs():
    assert probe_argv({"Test": ["CMD-SHELL", "exit 1"]}) == ["/bin/sh", "-c", "exit 1"]
    assert probe_argv({"Test": ["CMD-SHELL", "exit 1"]}, ["/bin/bash", "-ec"]) == ["/bin/bash", "-ec", "exit 1"]
    assert probe_argv({"Test": ["CMD", "/bin/check", "-v"]}) == ["/bin/check", "-v"]
    assert (
        probe_argv({"Test": ["NONE"]}) is None and probe_argv({}) is None and probe_argv({"Test": ["X", "y"]}) is None
    )


def test_the_copiers_spec_fills_in_dockers_defaults():
    assert spec_text((0, 0, 0, 0, 0), []) == "30000000000,30000000000,0,5000000000,3"
    assert spec_text((1, 2, 3, 4, 5), ['{"ExitCode": 0}']) == '1,2,3,4,5\x1e{"ExitCode": 0}'


def test_ps_status_of_a_restarting_and_a_healthy_container(tmp_path):
    from minirun.containers.container import Container, ContainerConfig
    from minirun.frontend.containerinfo import status_text
    from minirun.humanize import parse_rfc3339

    config = ContainerConfig(id="a" * 64, name="x", image="", image_ref="", created="", argv=["true"], env=[])
    now = parse_rfc3339("2026-01-01T00:00:05Z").timestamp()
    restarting = {"Status": "restarting", "ExitCode": 3, "FinishedAt": "2026-01-01T00:00:03Z"}
    assert status_text(Container(config, str(tmp_path), restarting), now) == "Restarting (3) 2 seconds ago"
    config.healthcheck = {"Test": ["CMD-SHELL", "true"]}
    running = {"Status": "running", "StartedAt": "2026-01-01T00:00:00Z"}
    assert status_text(Container(config, str(tmp_path), running), now) == "Up 5 seconds"  # not checked yet
    (tmp_path / "health.json").write_text('{"Status": "starting", "FailingStreak": 0, "Log": []}')
    assert status_text(Container(config, str(tmp_path), running), now) == "Up 5 seconds (health: starting)"
    (tmp_path / "health.json").write_text('{"Status": "healthy", "FailingStreak": 0, "Log": []}')
    assert status_text(Container(config, str(tmp_path), running), now) == "Up 5 seconds (healthy)"
