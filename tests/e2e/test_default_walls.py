"""Walls runc (so docker and podman) or podman put up by default that are not a matter of the
seccomp profile or the capabilities, each attacked from inside a container: the session keyring
a container's processes start with, and a `/dev` that runs nothing."""

from __future__ import annotations

import ctypes
import glob
import os
import subprocess
import sys

import pytest

from tests.helpers import build_probe

ENOKEY = 126
SECRET = "minirun-walls-secret"
# (add_key, keyctl) numbers
_KEY_SYSCALLS = {"x86_64": (248, 250), "aarch64": (217, 219)}
PODMAN_PROFILE = "/usr/share/containers/seccomp.json"


@pytest.fixture(scope="module")
def attack_dir(tmp_path_factory) -> str:
    return build_probe(tmp_path_factory.mktemp("probes"), "attack")


def _with_a_secret_in_a_new_session_keyring() -> None:
    """preexec_fn: the child leaves the test's session keyring for a new one of its own (the
    test's stays as it was) and puts a user key in it, as a login or a service's keys would be."""
    add_key, keyctl = _KEY_SYSCALLS[os.uname().machine]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(ctypes.c_long(keyctl), ctypes.c_long(1), None) < 0:  # KEYCTL_JOIN_SESSION_KEYRING, NULL
        os._exit(97)
    payload = b"hunter2"
    key = libc.syscall(
        ctypes.c_long(add_key), b"user", SECRET.encode(), payload, ctypes.c_long(len(payload)), ctypes.c_long(-3)
    )
    if key < 0:
        os._exit(98)


def with_a_secret(argv: list[str], store) -> str:
    """`argv` run from a session keyring holding the secret; its stdout, checked."""
    env = dict(os.environ, MINIRUN_ROOT=str(store))
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=120, preexec_fn=_with_a_secret_in_a_new_session_keyring
    )
    assert done.returncode == 0, done
    return done.stdout


def minirun(*args: str) -> list[str]:
    return [sys.executable, "-m", "minirun", *args]


def test_the_secret_is_there_for_the_callers_own_processes(attack_dir, isolated_store):
    """The control: the probe run beside the CLI, outside any container, finds the key."""
    assert with_a_secret([f"{attack_dir}/attack", "keyring", SECRET], isolated_store) == "keyring hunter2\n"


@pytest.mark.parametrize("profile", ["unconfined", PODMAN_PROFILE])
def test_a_container_never_shares_the_callers_session_keyring(cli, busybox, attack_dir, isolated_store, profile):
    """runc gives every container process a new session keyring; a container that shared the
    caller's read every key in it (keyctl search @s, read) wherever keyctl is allowed: podman's
    profile, seccomp=unconfined, an OCI bundle's (Kubernetes runs pods without a profile)."""
    if profile.startswith("/") and not os.path.exists(profile):
        pytest.skip("containers-common's seccomp.json is not installed")
    argv = minirun("run", "--rm", "--network", "none", "--security-opt", f"seccomp={profile}")
    argv += ["-v", f"{attack_dir}:/probe:ro", "busybox", "/probe/attack", "keyring", SECRET]
    assert with_a_secret(argv, isolated_store) == f"keyring {ENOKEY}\n"


def test_an_exec_never_shares_the_callers_session_keyring(cli, busybox, attack_dir, isolated_store):
    started = cli(
        "run",
        "-d",
        "--network",
        "none",
        "--security-opt",
        "seccomp=unconfined",
        "-v",
        f"{attack_dir}:/probe:ro",
        "busybox",
        "sleep",
        "300",
    )
    assert started.code == 0, started
    cid = started.out.strip()
    try:
        out = with_a_secret(minirun("exec", cid, "/probe/attack", "keyring", SECRET), isolated_store)
        assert out == f"keyring {ENOKEY}\n"
    finally:
        assert cli("rm", "-f", cid).code == 0


# -- /dev runs nothing ---------------------------------------------------------------------------------

DROP_AND_RUN = "cp /bin/busybox /dev/busybox && echo copied; /dev/busybox echo ran; echo code $?"


@pytest.mark.parametrize("flags", [["--read-only"], [], ["--privileged", "--read-only"]])
def test_a_program_written_into_dev_does_not_run(cli, busybox, flags):
    """podman's /dev is noexec: /dev is a writable tmpfs in every container, the one place a
    --read-only container (root, /dev/shm, --tmpfs all noexec or read-only) could drop a
    program it fetched and run it."""
    result = cli("run", "--rm", "--network", "none", *flags, "busybox", "sh", "-c", DROP_AND_RUN)
    assert result.code == 0, result
    assert result.out == "copied\ncode 126\n"  # written, but EACCES at execve


# -- thermal side channel -------------------------------------------------------------------------------


def test_no_cpus_thermal_throttle_counts_show(cli, busybox):
    """docker >= 28 masks each CPU's thermal_throttle (GHSA-6fw5-f8r9-fgfm): its thermal event
    counts, read while another tenant computes, leak what it computes. (/proc/interrupts, the
    other half, is masked by test_containment's docker's list.)"""
    throttles = glob.glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle")
    if not throttles:
        pytest.skip("this host's CPUs have no thermal_throttle (a VM's often do not)")
    script = "for d in " + " ".join(throttles) + "; do ls -A $d | wc -l; done"
    result = cli("run", "--rm", "--network", "none", "busybox", "sh", "-c", script)
    assert result.code == 0, result
    assert result.out.split() == ["0"] * len(throttles)  # each an empty tmpfs
