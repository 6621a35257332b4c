"""run's service-container flags for real (issue 15): what a container sees of --add-host, --dns*,
--ulimit, --shm-size, --group-add and --sysctl; -P reaching an EXPOSEd port; stop using the stop
signal; --init reaping orphans; --pid/--ipc/--uts host keeping every other wall; --cidfile; --pull."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request

import pytest

from tests.helpers import make_image, wait_until
from tests.registryserver import minirun_config, registry  # noqa: F401


def host_sysctl(key: str) -> str:
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        return f.read().strip()


def namespace(pid: int | str, name: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{name}")


def unique_sleep() -> str:
    """A sleep no other process on the host runs (other test sessions may run theirs)."""
    return f"sleep {300 + int.from_bytes(os.urandom(2), 'big')}.5"


def running(args: str) -> bool:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return args in out.splitlines()


def test_a_container_sees_its_hosts_resolv_limits_groups_shm_and_sysctls(cli, busybox):
    somaxconn, shmmax = host_sysctl("net.core.somaxconn"), host_sysctl("kernel.shmmax")
    script = (
        "cat /etc/hosts; echo --; cat /etc/resolv.conf; echo --; ulimit -n; ulimit -Hn; ulimit -c; echo --; "
        "id -G; echo --; df -k /dev/shm | tail -1; echo --; "
        "cat /proc/sys/net/core/somaxconn /proc/sys/kernel/shmmax; ip route | grep default"
    )
    result = cli(
        "run",
        "--rm",
        "--add-host",
        "db.internal:10.1.2.3",
        "--add-host",
        "host.docker.internal:host-gateway",
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "corp.example",
        "--dns-option",
        "ndots:3",
        "--ulimit",
        "nofile=256:512",
        "--ulimit",
        "core=0",
        "--shm-size",
        "8m",
        "--group-add",
        "nobody",
        "--group-add",
        "4321",
        "--sysctl",
        "net.core.somaxconn=1234",
        "--sysctl",
        "kernel.shmmax=65536",
        "busybox",
        "sh",
        "-c",
        script,
    )
    assert result.code == 0, result
    hosts, resolv, limits, groups, shm, sysctls = result.out.split("--\n")
    gateway = sysctls.splitlines()[-1].split()[2]  # `default via GATEWAY dev eth0`: the host on the bridge
    # docker's order: the extra lines, then the container's own
    assert hosts.splitlines()[-3:-1] == ["10.1.2.3\tdb.internal", f"{gateway}\thost.docker.internal"], hosts
    assert resolv == "nameserver 192.0.2.53\nsearch corp.example\noptions ndots:3\n"
    assert limits.split() == ["256", "512", "0"]
    assert groups.split()[0] == "0" and sorted(groups.split()[1:], key=int) == ["4321", "65534"]  # (the kernel sorts)
    assert shm.split()[1] == str(8 * 1024)  # 1K-blocks
    assert sysctls.splitlines()[:2] == ["1234", "65536"]
    # written in the container's own namespaces: the host's values are untouched
    assert (host_sysctl("net.core.somaxconn"), host_sysctl("kernel.shmmax")) == (somaxconn, shmmax)


def test_sysctls_that_are_not_the_containers_own_are_refused(cli, busybox, isolated_store):
    before = host_sysctl("kernel.core_pattern")
    for args, needle in [
        (["--sysctl", "kernel.core_pattern=|/tmp/x"], "sysctl 'kernel.core_pattern=|/tmp/x' is not allowed"),
        # a key is a path under /proc/sys: one climbing out of net.* is no key
        (["--sysctl", "net.core/../../kernel/core_pattern=|/tmp/x"], "is no sysctl name"),
    ]:
        result = cli("run", "--rm", *args, "busybox", "true")
        assert result.code == 125 and needle in result.err and len(result.err.splitlines()) == 1, result
    assert host_sysctl("kernel.core_pattern") == before
    assert not (isolated_store / "containers").exists() or not os.listdir(isolated_store / "containers")


@pytest.fixture
def service_image(store, busybox):
    """busybox with EXPOSE 80 and STOPSIGNAL SIGUSR1, as a Dockerfile would make it."""
    config = dict(busybox.config.get("config", {}), ExposedPorts={"80/tcp": {}}, StopSignal="SIGUSR1")
    make_image(store, "service:1", [], config=config, base=busybox)
    return "service:1"


def test_publish_all_cidfile_and_the_stop_signal(cli, service_image, tmp_path):
    cidfile = tmp_path / "web.cid"
    script = (
        'trap "echo stopped by USR1; exit 3" USR1; mkdir /www; echo hello > /www/index.html; '
        "httpd -p 80 -h /www; while true; do sleep 0.05; done"
    )
    run = cli(
        "run", "-d", "-P", "--expose", "81/udp", "--cidfile", str(cidfile), "--stop-timeout", "30",
        service_image, "sh", "-c", script,
    )  # fmt: skip
    assert run.code == 0, run
    container_id = run.out.strip()
    assert cidfile.read_text() == container_id
    info = json.loads(cli("inspect", container_id).out)[0]
    assert info["Config"]["ExposedPorts"] == {"80/tcp": {}, "81/udp": {}}
    assert (info["Config"]["StopSignal"], info["Config"]["StopTimeout"]) == ("SIGUSR1", 30)
    assert info["HostConfig"]["PublishAllPorts"] is True and info["HostConfig"]["PortBindings"] == {}
    ports = info["NetworkSettings"]["Ports"]
    host_port = int(ports["80/tcp"][0]["HostPort"])
    assert host_port > 0 and int(ports["81/udp"][0]["HostPort"]) > 0

    def fetch() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/", timeout=2) as response:
                return response.read().decode()
        except OSError:
            return ""

    assert wait_until(lambda: fetch() == "hello\n"), "the port -P picked never answered"
    # the stop signal, well before the 30 s that would end in SIGKILL
    assert cli("stop", container_id).code == 0
    assert cli("logs", container_id).out == "stopped by USR1\n"
    assert json.loads(cli("inspect", container_id).out)[0]["State"]["ExitCode"] == 3
    again = cli("run", "--rm", "--cidfile", str(cidfile), service_image, "true")
    assert again.code == 125 and "container ID file found" in again.err, again


def test_init_reaps_orphans_that_the_command_never_waits_for(cli, busybox):
    # the orphan (a sleep whose parent left) is adopted by PID 1; the command that PID 1 becomes
    # (sleep) never waits, so only an init reaps it
    script = 'sh -c "sleep 0.1 &"; (sleep 0.8; ps -o pid,stat,comm) & exec sleep 1.2'
    plain = cli("run", "--rm", "busybox", "sh", "-c", script)
    with_init = cli("run", "--rm", "--init", "busybox", "sh", "-c", script)
    assert plain.code == 0 and with_init.code == 0, (plain, with_init)
    zombies = [line for line in plain.out.splitlines()[1:] if line.split()[1].startswith("Z")]
    assert zombies and zombies[0].split()[0] != "1", plain.out  # the control: without an init, a zombie
    rows = {line.split()[0]: line.split() for line in with_init.out.splitlines()[1:]}
    assert rows["1"][2] == "docker-init", with_init.out  # tini, bound where docker puts its init
    assert not [r for r in rows.values() if r[1].startswith("Z")], with_init.out
    # the command's own status comes through, and a missing command fails as it would without --init
    assert cli("run", "--rm", "--init", "busybox", "sh", "-c", "exit 7").code == 7
    missing = cli("run", "--rm", "--init", "busybox", "nosuchcommand")
    assert missing.code == 127 and 'exec: "nosuchcommand": executable file not found' in missing.err, missing


def test_host_namespaces_share_only_what_was_asked_and_keep_every_other_wall(cli, busybox):
    orphan = unique_sleep()  # no PID namespace takes it along when PID 1 exits
    script = (
        "for n in pid ipc uts net mnt cgroup; do readlink /proc/self/ns/$n; done; hostname; "
        f"grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; {orphan} >/dev/null 2>&1 & true"
    )
    shared = cli("run", "--rm", "--pid", "host", "--ipc", "host", "--uts", "host", "busybox", "sh", "-c", script)
    assert shared.code == 0, shared
    lines = shared.out.splitlines()
    ours = os.getpid()
    assert lines[:3] == [namespace(ours, "pid"), namespace(ours, "ipc"), namespace(ours, "uts")]
    assert namespace(ours, "net") not in lines[3:6]  # no wall taken down but those asked for
    assert lines[6] == socket.gethostname()
    # docker's 14 capabilities, no_new_privs and the seccomp filter stay
    assert lines[7:] == ["CapEff:\t00000000800405fb", "NoNewPrivs:\t1", "Seccomp:\t2"]
    # the orphan of a --pid host container dies with its PID 1, as runc kills it
    assert not running(orphan)
    # a default container sees no host process
    own = cli("run", "--rm", "busybox", "sh", "-c", "ls /proc | grep -c '^[0-9]'; readlink /proc/self/ns/pid")
    count, pid_ns = own.out.split()
    assert pid_ns != namespace(ours, "pid") and int(count) <= 3, own.out
    refused = cli("run", "--rm", "--uts", "host", "-h", "web", "busybox", "true")
    assert refused.code == 125 and "conflicting options: hostname and the UTS mode" in refused.err, refused


def test_exec_and_top_in_a_container_of_the_hosts_pid_namespace(cli, busybox, isolated_store):
    orphan, command = unique_sleep(), unique_sleep()
    flags = ["--pid", "host", "--ulimit", "nofile=300", "--group-add", "777"]
    cid = cli("run", "-d", *flags, "busybox", "sh", "-c", f"{orphan} & exec {command}").out.strip()
    assert cid, "no container"
    # an exec joins what the container has (the host's PID namespace) and gets its limits and groups, as docker's
    joined = cli("exec", cid, "sh", "-c", "readlink /proc/self/ns/pid; ulimit -n; id -G")
    assert joined.code == 0 and joined.out.splitlines() == [namespace(os.getpid(), "pid"), "300", "0 777"], joined
    top = cli("top", cid).out
    assert orphan in top and command in top and len(top.splitlines()) == 3, top  # its own, no host's
    # PID 1 killed: the orphan holding the log pipes goes with it, so the exit is recorded at once
    assert cli("kill", cid).code == 0
    state = isolated_store / "containers" / cid / "state.json"
    assert wait_until(lambda: '"exited"' in state.read_text() and not running(orphan)), state.read_text()
    assert cli("rm", cid).code == 0


@pytest.mark.peers  # docker-registry
def test_pull_policies(cli, store, busybox, registry, minirun_config, tmp_path):  # noqa: F811
    ref = f"{registry.host}/team/tool:1"
    assert cli("tag", "busybox", ref).code == 0 and cli("push", ref).code == 0
    other = str(tmp_path / "other-store")  # as on another machine: the image is in the registry only
    never = cli("run", "--rm", "--pull", "never", ref, "true", root=other)
    assert never.code == 125 and never.err == f"minirun: error: No such image: {ref}\n", never
    missing = cli("run", "--rm", ref, "echo", "pulled", root=other)  # --pull missing, the default
    assert missing.code == 0 and missing.out == "pulled\n", missing
    assert missing.err.startswith(f"Unable to find image '{ref}' locally\n") and "Pull complete" in missing.err
    present = cli("run", "--rm", "--pull", "never", ref, "echo", "local", root=other)
    assert present.code == 0 and present.out == "local\n" and present.err == "", present
    always = cli("run", "--rm", "--pull", "always", ref, "echo", "again", root=other)
    assert always.code == 0 and always.out == "again\n" and "Unable to find" not in always.err, always
    gone = cli("run", "--rm", f"{registry.host}/team/nothing:1", "true", root=other)
    assert gone.code == 125 and len(gone.err.splitlines()) == 1, gone
    assert gone.err.startswith(f"minirun: error: No such image: {registry.host}/team/nothing:1 (pulling it: ")


def test_a_containers_processes_start_with_umask_0022_whatever_the_callers(cli, busybox, isolated_store):
    """runc's default (docker's, podman's): a CLI run under umask 077 must not make every file the
    container writes private to its owner; for run, detached PID 1 and exec alike."""
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))

    def minirun(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "minirun", *args], env=env, capture_output=True, text=True, umask=0o077, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert minirun("run", "--rm", "--network", "none", "busybox", "sh", "-c", "umask") == "0022"
    container = minirun("run", "-d", "--network", "none", "busybox", "sh", "-c", "umask > /pid1; sleep 300")
    try:
        assert minirun("exec", container, "sh", "-c", "umask; cat /pid1") == "0022\n0022"
    finally:
        cli("rm", "-f", container)
