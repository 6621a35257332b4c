"""credentials: logins from several processes at once all keep their entries (each reads,
changes and writes back the whole file: without a lock, one write lost another's entry)."""

from __future__ import annotations

import json
import os
import stat

from minirun.distribution import credentials

PROCESSES = 8
SAVES_EACH = 25  # a lost update happened about once in 10 single logins: 200 make it certain


def test_parallel_logins_lose_no_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIRUN_CONFIG", str(tmp_path / "config"))
    start_read, start_write = os.pipe()
    children = []
    for p in range(PROCESSES):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(start_write)
                os.read(start_read, 1)  # all start together: EOF when the parent closes its end
                for n in range(SAVES_EACH):
                    credentials.save(f"127.0.0.{p + 1}:{5000 + n}", f"user{p}", f"pw{p}-{n}")
                status = 0
            finally:
                os._exit(status)
        children.append(pid)
    os.close(start_read)
    os.close(start_write)
    assert all(os.waitpid(pid, 0)[1] == 0 for pid in children)
    auths = json.loads((tmp_path / "config" / "auth.json").read_text())["auths"]
    assert len(auths) == PROCESSES * SAVES_EACH
    assert credentials.lookup("127.0.0.8:5024") == ("user7", "pw7-24")
    assert stat.S_IMODE((tmp_path / "config" / "auth.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "config" / "auth.json.lock").stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path / "config")) == ["auth.json", "auth.json.lock"]  # no temp file left


def test_logout_of_nothing_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIRUN_CONFIG", str(tmp_path / "config"))
    assert credentials.remove("127.0.0.1:5000") is False
    assert not (tmp_path / "config").exists()
    credentials.save("127.0.0.1:5000", "u", "p")
    assert credentials.remove("127.0.0.1:5000") is True and credentials.remove("127.0.0.1:5000") is False
    assert json.loads((tmp_path / "config" / "auth.json").read_text()) == {"auths": {}}
