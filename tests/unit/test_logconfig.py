"""docker's --log-driver/--log-opt rules, the store's daemon.json defaults and minirun's bound."""

from __future__ import annotations

import pytest

from minirun.containers import logconfig
from minirun.errors import DamagedRecord, UsageError


def test_sizes_as_docker_writes_them():
    assert logconfig.parse_size("10m") == 10 << 20
    assert logconfig.parse_size("512k") == 512 << 10
    assert logconfig.parse_size("1g") == 1 << 30
    assert logconfig.parse_size("100") == 100
    assert logconfig.parse_size("2MB") == 2 << 20
    assert logconfig.parse_size("-1") == 0  # unlimited
    for bad in ("", "0", "1x", "m", "-2", "1.5m"):
        with pytest.raises(UsageError, match="invalid log size"):
            logconfig.parse_size(bad)


def test_the_flags_over_the_stores_defaults_over_minirun_s():
    assert logconfig.resolve(None, {}, (None, {})) == {
        "Type": "json-file",
        "Config": {"max-size": "20m", "max-file": "5", "compress": "false"},
    }
    store = ("local", {"max-size": "1m"})
    assert logconfig.resolve(None, {"max-file": "2"}, store)["Config"] == {
        "max-size": "1m",
        "max-file": "2",
        "compress": "true",
    }
    # the store's options are for its own driver only
    assert logconfig.resolve("json-file", {}, store)["Config"]["max-size"] == "20m"
    assert logconfig.resolve("none", {}, store) == {"Type": "none", "Config": {}}


def test_limits():
    assert logconfig.limits(
        {"Type": "json-file", "Config": {"max-size": "1k", "max-file": "3", "compress": "true"}}
    ) == (1024, 3, True)
    assert logconfig.limits(
        {"Type": "json-file", "Config": {"max-size": "1k", "max-file": "1", "compress": "true"}}
    ) == (1024, 1, False)  # nothing is rotated to compress
    assert logconfig.limits({}) == (0, 1, False)  # a record from before bounded logs: as it was
    assert logconfig.limits({"Type": "none"}) == (0, 1, False)


def test_daemon_json(tmp_path):
    assert logconfig.store_defaults(str(tmp_path)) == (None, {})
    (tmp_path / "daemon.json").write_text('{"log-driver": "local", "log-opts": {"max-size": "5m"}, "other": 1}')
    assert logconfig.store_defaults(str(tmp_path)) == ("local", {"max-size": "5m"})
    (tmp_path / "daemon.json").write_text('{"log-opts": {"max-size": 5}}')
    with pytest.raises(DamagedRecord, match="log-opts a map of strings"):
        logconfig.store_defaults(str(tmp_path))
