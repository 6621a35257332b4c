"""`minirun run` for real: overlay, namespaces, privileges, exit codes, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import assert_sees_the_hosts_links, d, f, make_image, make_tar

CAPS_DEFAULT = "00000000800405fb"  # docker's 14 capabilities less podman's three drops


def test_run_prints_and_returns_the_exit_code(cli, busybox):
    result = cli("run", "--rm", "busybox", "echo", "hello")
    assert (result.code, result.out, result.err) == (0, "hello\n", "")
    assert cli("run", "--rm", "busybox", "sh", "-c", "exit 3").code == 3
    # PID 1 cannot kill itself from inside its namespace (the kernel protects init), as in docker
    assert cli("run", "--rm", "busybox", "sh", "-c", "kill -9 $$; echo survived").out == "survived\n"
    split = cli("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (split.out, split.err) == ("out\n", "err\n")


def test_topmost_layer_wins_whiteouts_hide_opaque_dirs_hide(cli, store, busybox):
    make_image(
        store,
        "layered",
        [
            make_tar([d("etc"), f("etc/config.yaml", "v1\n"), f("etc/gone", "x"), d("opaque"), f("opaque/old", "o")]),
            make_tar(
                [
                    d("etc"),
                    f("etc/config.yaml", "v2\n"),
                    f("etc/.wh.gone"),
                    d("opaque"),
                    f("opaque/.wh..wh..opq"),
                    f("opaque/new", "n"),
                ]
            ),
        ],
        base=busybox,
    )
    script = "cat /etc/config.yaml; test -e /etc/gone || echo gone; ls /opaque"
    result = cli("run", "--rm", "layered", "sh", "-c", script)
    assert result.out == "v2\ngone\nnew\n", result.err


def test_containers_of_one_image_never_see_each_others_writes(cli, busybox, isolated_store):
    first = cli("run", "--name", "writer", "busybox", "sh", "-c", "echo mine > /tmp/x; rm /etc/passwd")
    assert first.code == 0, first.err
    other = cli("run", "--rm", "busybox", "sh", "-c", "test -e /tmp/x && echo leaked; cat /etc/passwd | head -1")
    assert other.out == "root:x:0:0:root:/root:/bin/sh\n"
    containers = [c for c in os.listdir(isolated_store / "containers")]
    assert len(containers) == 1  # the --rm one is gone, the named one stays
    upper = isolated_store / "containers" / containers[0] / "upper"
    assert (upper / "tmp/x").read_text() == "mine\n"
    layer = isolated_store / "layers" / busybox.diff_ids[0].split(":")[1] / "diff"
    assert (layer / "etc/passwd").exists() and not (layer / "tmp/x").exists()


def test_isolation(cli, busybox, tmp_path):
    (tmp_path / "host-secret").write_text("secret")
    script = " ; ".join(
        [
            "echo pid=$$",
            "echo procs=$(ls /proc | grep -c '^[0-9]')",
            "echo host=$(hostname)",
            "echo links=$(ls /sys/class/net | tr '\\n' ' ')",
            "mount -t tmpfs none /mnt 2>/dev/null && echo mounted || echo mount-refused",
            "(echo x > /proc/sys/kernel/domainname) 2>/dev/null && echo sysctl-written || echo sysctl-refused",
            f"test -e {tmp_path}/host-secret && echo host-visible || echo host-hidden",
            "grep CapEff /proc/self/status",
            "grep CapBnd /proc/self/status",
            "grep NoNewPrivs /proc/self/status",
        ]
    )
    result = cli("run", "--rm", "--hostname", "box", "busybox", "sh", "-c", script)
    lines = dict(line.split("=", 1) if "=" in line else (line, "") for line in result.out.split("\n") if line)
    assert lines["pid"] == "1"
    assert int(lines["procs"]) <= 4  # sh, the $(...) subshell, ls, grep: none of the host's
    assert lines["host"] == "box"
    assert lines["links"].split() == ["eth0", "lo"]  # the default bridge network: its own veth only
    assert "mount-refused" in lines and "sysctl-refused" in lines and "host-hidden" in lines
    assert result.out.count(CAPS_DEFAULT) == 2
    assert "NoNewPrivs:\t1" in result.out


def test_default_hostname_is_the_short_id_and_env_defaults(cli, busybox, isolated_store):
    result = cli("run", "-e", "A=b", "busybox", "sh", "-c", "hostname; env | sort")
    hostname, *env = result.out.splitlines()
    [container] = os.listdir(isolated_store / "containers")
    assert hostname == container[:12]
    assert {"A=b", f"HOSTNAME={hostname}", "HOME=/root"} <= set(env)
    assert any(e.startswith("PATH=/usr/local/sbin") for e in env)


@pytest.mark.parametrize(
    "args,code,needle",
    [
        (["--pull", "never", "nosuchimage", "true"], 125, "No such image"),  # (the default pulls: off the network)
        (["busybox", "nosuchcommand"], 127, 'exec: "nosuchcommand": executable file not found in $PATH'),
        (["busybox", "/no/such/path"], 127, "no such file or directory"),
        (["busybox", "/etc/passwd"], 126, "permission denied"),
        (["busybox", "/tmp"], 126, "is a directory"),
        (["--bogus", "busybox"], 125, "--bogus"),
        (["-u", "nosuchuser", "busybox", "true"], 125, "nosuchuser"),
        (["-w", "/etc/passwd", "busybox", "true"], 125, "not a directory"),
    ],
)
def test_exit_codes_of_failures(cli, busybox, isolated_store, args, code, needle):
    result = cli("run", "--rm", *args)
    assert result.code == code, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minirun: error: ") and needle in lines[0], result.err
    assert not (isolated_store / "containers").exists() or os.listdir(isolated_store / "containers") == []


def test_user_workdir_volumes_tmpfs_read_only(cli, busybox, tmp_path):
    (tmp_path / "shared.txt").write_text("from host\n")
    assert cli("run", "--rm", "-u", "nobody", "busybox", "id", "-u").out == "65534\n"
    assert cli("run", "--rm", "-u", "1234:5678", "busybox", "id").out.startswith("uid=1234 gid=5678")
    nobody_caps = cli("run", "--rm", "-u", "nobody", "busybox", "grep", "CapEff", "/proc/self/status").out
    assert nobody_caps.split() == ["CapEff:", "0000000000000000"]
    assert cli("run", "--rm", "-w", "/tmp/new/dir", "busybox", "pwd").out == "/tmp/new/dir\n"
    mounted = cli(
        "run", "--rm", "-v", f"{tmp_path}:/data", "busybox", "sh", "-c", "cat /data/shared.txt; echo w > /data/w"
    )
    assert mounted.out == "from host\n" and (tmp_path / "w").read_text() == "w\n"
    ro = cli("run", "--rm", "-v", f"{tmp_path}:/data:ro", "busybox", "sh", "-c", "echo x > /data/x")
    assert ro.code != 0 and not (tmp_path / "x").exists()
    tmpfs = cli("run", "--rm", "--tmpfs", "/scratch", "busybox", "sh", "-c", "grep ' /scratch ' /proc/mounts")
    assert "tmpfs" in tmpfs.out
    readonly = cli("run", "--rm", "--read-only", "busybox", "sh", "-c", "touch /x || echo refused")
    assert "refused" in readonly.out
    assert cli("run", "--rm", "--read-only", "busybox", "sh", "-c", "echo ok > /dev/null && echo ok").out == "ok\n"


def test_provided_files(cli, busybox):
    result = cli("run", "--rm", "--hostname", "h1", "busybox", "sh", "-c", "cat /etc/hostname; head -1 /etc/hosts")
    assert result.out == "h1\n127.0.0.1\tlocalhost\n"


def test_fds_beyond_stdio_are_not_inherited(busybox, isolated_store):
    read_end, write_end = os.pipe()
    try:
        env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
        out = subprocess.run(
            [sys.executable, "-m", "minirun", "run", "--rm", "busybox", "ls", "/proc/self/fd"],
            pass_fds=(read_end, write_end),
            capture_output=True,
            text=True,
            env=env,
        ).stdout
    finally:
        os.close(read_end)
        os.close(write_end)
    assert out.split() == ["0", "1", "2", "3"]  # 3 is ls's own handle on the directory


def test_stdin_only_with_i(cli, busybox):
    assert cli("run", "--rm", "-i", "busybox", "cat", input=b"piped\n").out == "piped\n"
    assert cli("run", "--rm", "busybox", "cat", input=b"piped\n").out == ""


def test_signals_are_forwarded(busybox, isolated_store):
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    script = "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.05; done"
    proc = subprocess.Popen(
        [sys.executable, "-m", "minirun", "run", "--rm", "busybox", "sh", "-c", script],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 42
        assert proc.stdout.read() == "got-term\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_killed_by_a_signal_is_128_plus_n(busybox, isolated_store):
    import json

    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    proc = subprocess.Popen(
        [sys.executable, "-m", "minirun", "run", "busybox", "sh", "-c", "echo ready; sleep 30"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        [container] = os.listdir(isolated_store / "containers")
        state_file = isolated_store / "containers" / container / "state.json"
        deadline = time.monotonic() + 10  # the CLI records "running" right after the exec
        while (state := json.loads(state_file.read_text()))["Status"] != "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert state["Status"] == "running"
        os.kill(state["Pid"], signal.SIGKILL)
        assert proc.wait(timeout=20) == 137
        state = json.loads((isolated_store / "containers" / container / "state.json").read_text())
        assert (state["Status"], state["ExitCode"]) == ("exited", 137)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_rm_leaves_nothing(cli, busybox, isolated_store):
    assert cli("run", "--rm", "busybox", "sh", "-c", "echo x > /tmp/file").code == 0
    assert os.listdir(isolated_store / "containers") == []


def test_names_are_unique(cli, busybox):
    assert cli("run", "--name", "one", "busybox", "true").code == 0
    again = cli("run", "--name", "one", "busybox", "true")
    assert again.code == 125 and "already in use" in again.err


def test_an_image_without_layers_is_an_error(cli, store):
    make_image(store, "empty", [], config={"Cmd": ["sh"]})
    result = cli("run", "--rm", "empty")
    assert result.code == 125 and "no layers" in result.err


@pytest.mark.parametrize("count", [130, 500])
def test_many_layers(cli, store, busybox, count):
    layers = [make_tar([d("layers"), f(f"layers/{i:03d}", str(i)), f("layers/top", str(i))]) for i in range(count - 1)]
    make_image(store, f"tall{count}", layers, base=busybox)
    result = cli("run", "--rm", f"tall{count}", "sh", "-c", "ls /layers | wc -l; cat /layers/top")
    assert result.out.split() == [str(count), str(count - 2)], result.err


def test_network_host_shares_the_hosts_links(cli, busybox):
    assert_sees_the_hosts_links(
        lambda: cli("run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net").out.split()
    )
    assert cli("run", "--rm", "busybox", "ls", "/sys/class/net").out.split() == ["eth0", "lo"]
    assert cli("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net").out.split() == ["lo"]


def test_entrypoint_from_the_command_line(cli, busybox):
    assert cli("run", "--rm", "--entrypoint", "echo", "busybox", "a", "b").out == "a b\n"


def test_an_untouched_container_has_an_empty_upper(cli, busybox, isolated_store):
    """The mount points and provided files live in the init layer, never in the upper."""
    assert cli("run", "busybox", "true").code == 0
    [container] = os.listdir(isolated_store / "containers")
    assert os.listdir(isolated_store / "containers" / container / "upper") == []


def test_the_hosts_disk_cannot_be_read_through_a_device_node(cli, busybox):
    """With docker's CAP_MKNOD (podman's default has none) reading the host's disk must still fail."""
    dev = os.stat("/").st_dev
    script = (
        f"mknod /tmp/disk b {os.major(dev)} {os.minor(dev)} && "
        "(head -c1 /tmp/disk >/dev/null 2>&1 && echo read-disk || echo disk-refused)"
    )
    result = cli("run", "--rm", "--cap-add", "MKNOD", "busybox", "sh", "-c", script)
    assert "disk-refused" in result.out and "read-disk" not in result.out, result


def test_device_nodes_made_inside_do_not_open_anywhere(cli, busybox, tmp_path):
    """With docker's CAP_MKNOD the root, /dev and volumes are still nodev, so a node a container
    makes (here: a second /dev/zero) cannot be opened, while the provided ones work."""
    script = (
        "for d in /tmp /dev /data; do mknod $d/z c 1 5 && "
        "(head -c1 $d/z >/dev/null 2>&1 && echo $d-opened || echo $d-refused); done; "
        "head -c4 /dev/zero | wc -c; head -c4 /dev/urandom | wc -c; echo x > /dev/null && echo null-ok"
    )
    result = cli("run", "--rm", "--cap-add", "MKNOD", "-v", f"{tmp_path}:/data", "busybox", "sh", "-c", script)
    assert result.out.split() == ["/tmp-refused", "/dev-refused", "/data-refused", "4", "4", "null-ok"], result


def test_labels_come_from_the_image_then_the_flags(cli, busybox, tmp_path):
    base = cli("run", "--name", "base", "--network", "none", "busybox", "true")
    assert base.code == 0, base.err
    committed = cli("commit", "-c", "LABEL from.image=yes", "-c", "LABEL shared=image", "base", "labelled:1")
    assert committed.code == 0, committed.err
    path = tmp_path / "labels"
    path.write_text("from.file=yes\n")
    ran = cli(
        "run",
        "--name",
        "withlabels",
        "--network",
        "none",
        "--label-file",
        str(path),
        "-l",
        "shared=flag",
        "labelled:1",
        "true",
    )
    assert ran.code == 0, ran.err
    labels = json.loads(cli("inspect", "withlabels").out)[0]["Config"]["Labels"]
    assert labels == {"from.image": "yes", "shared": "flag", "from.file": "yes"}
