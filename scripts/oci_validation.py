#!/usr/bin/env python3
"""The OCI runtime-tools validation suite, run with minirun-oci and with runc, in one run.

    .venv/bin/python scripts/oci_validation.py SRC [--only NAME ...] [--timeout SECONDS]

SRC is a checkout of opencontainers/runtime-tools at the commit Debian 12 packages
(0.9.0+git20220423.g0105384; later ones need Go >= 1.21, Debian has 1.19). Debian's
golang-github-opencontainers-runtime-tools-dev ships the library only, without validation/ and
cmd/runtimetest, and its source package is not on the package mirror, so the checkout comes from
elsewhere; its vendor/ dir lets it build offline with Debian's golang-go.

What it does:
  - builds runtimetest and every validation/*/*.t (`make runtimetest validation-executables`) with a
    Go cache of its own under the work dir;
  - runs each test twice, RUNTIME = a wrapper around runc and one around minirun-oci, each with a
    --root of this run's own (never /run/runc or /run/minirun-oci), bundles in a TMPDIR of its own;
    minirun-oci's cgroup parent (where a config without cgroupsPath, or with a relative one, puts
    its container) is this run's own too, MINIRUN_CGROUP_PARENT=ocival<pid>, removed at the end;
  - counts each test's TAP lines (ok, not ok, skip) and how it ended: without its plan line and
    with an error exit it crashed, without TAP and exit 0 it passed (a _fail test refused as it
    wished); the plan 1..0 after an error's diagnostic: it gave up before its first check; its
    checks then an error exit (util.Fatal): it failed after them. It prints
    a table, the totals, and every check minirun-oci fails that runc passes, with its diagnostic.
The host's cgroup dirs are listed before and after (and each cgroup2 root's subtree_control, whose
additions are undone): a new dir of the suite's naming (its
cgroupsPath "cgrouptest", "testdir/cgrouptest/container", or a container id, which it makes a
UUID) is reported and removed if empty; others' dirs that come and go meanwhile are not ours.
The work dir is removed at the end.

A measurement, not a test: it exits 0 whatever the counts, 1 if the build failed or something
was left behind. Standard library only. Run as root.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MINIRUN_OCI = os.path.join(os.path.dirname(HERE), ".venv", "bin", "minirun-oci")
CGROUP_ROOT = "/sys/fs/cgroup"
PARENT = f"ocival{os.getpid()}"  # minirun-oci's cgroup parent in this run (hostwide.py's MINIRUN_CGROUP_PARENT)
# the suite's own cgroup names: its cgroupsPath values (runtime-tools' cgroups/cgroups.go) and its
# containers' ids (uuid.NewV4)
SUITES_CGROUP = re.compile(r"/(cgrouptest|testdir)(/|$)|/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def cgroup_dirs() -> set[str]:
    """Every cgroup dir on the host, any depth (v1 hierarchies and the v2 one)."""
    found = set()
    for top in glob.glob(os.path.join(CGROUP_ROOT, "*")):
        for directory, _, _ in os.walk(top):
            found.add(directory)
    return found


def subtree_controls() -> dict[str, set[str]]:
    """cgroup.subtree_control of each cgroup2 mount's root: a runtime enables a controller there
    for a container that asks (minirun-oci: hugetlb on the hybrid layout), runc's way on v2."""
    found = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if line.split(" - ")[-1].startswith("cgroup2 "):
                path = os.path.join(line.split()[4], "cgroup.subtree_control")
                try:
                    with open(path) as control:
                        found[path] = set(control.read().split())
                except OSError:
                    continue
    return found


def restore_subtree_controls(before: dict[str, set[str]]) -> list[str]:
    """Turn off what this run turned on at a cgroup2 root; what stays busy is said."""
    kept = []
    for path, controllers in subtree_controls().items():
        for name in sorted(controllers - before.get(path, controllers)):
            try:
                with open(path, "w") as control:
                    control.write(f"-{name}")
            except OSError:
                kept.append(f"{path}: +{name} (busy, kept)")
    return kept


def wrapper(path: str, command: list[str]) -> str:
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexec env " + " ".join(command) + ' "$@"\n')
    os.chmod(path, 0o755)
    return path


def build(src: str, work: str) -> list[str]:
    env = dict(
        os.environ,
        GOFLAGS="-mod=vendor",
        GOCACHE=os.path.join(work, "gocache"),
        GOPATH=os.path.join(work, "gopath"),
        GOTOOLCHAIN="local",
    )
    done = subprocess.run(
        ["make", "runtimetest", "validation-executables"], cwd=src, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"oci_validation: the build failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return sorted(glob.glob(os.path.join(src, "validation", "*", "*.t")))


class Counts:
    def __init__(self, tap: str, code: int) -> None:
        self.passed = self.failed = self.skipped = 0
        self.failures: list[str] = []
        lines = tap.splitlines()
        for i, line in enumerate(lines):
            if re.match(r"ok \d+.*# SKIP", line):
                self.skipped += 1
            elif re.match(r"ok \d+", line):
                self.passed += 1
            elif re.match(r"not ok \d+", line):
                self.failed += 1
                detail = []
                for follow in lines[i + 1 : i + 8]:
                    if re.match(r"(not )?ok \d+|1\.\.\d+", follow):
                        break
                    detail.append(follow.strip())
                self.failures.append(line + (" | " + " ".join(detail) if detail else ""))
        planned = any(re.fullmatch(r"1\.\.\d+", line) for line in lines)
        # A _fail test that got the refusal it wanted exits 0 without TAP (process_rlimits_fail):
        # passed. Without a plan and with an error exit, it crashed.
        self.untapped = not planned and code == 0
        self.crashed = not planned and code != 0
        if self.crashed:
            self.failures.append(f"no TAP plan (exit {code}): " + " | ".join(lines[-4:]))
        # After its checks, util.Fatal (exit 1) says the test failed all the same
        # (process_capabilities_fail when the runtime ran what it should have refused).
        self.exited = planned and code != 0 and bool(self.passed or self.failed or self.skipped)
        if self.exited:
            last = [line.strip() for line in lines if line.strip() and not re.fullmatch(r"1\.\.\d+", line)]
            self.failures.append(f"exit {code} after its checks: " + " | ".join(last[-2:])[:250])
        # A test that gave up before its first check prints the plan "1..0" after why: the YAML of
        # an error (exit 0), or util.Fatal's words (exit 1). No check failed, yet it did not pass.
        # (A test with no checks of its own, prestart_fail say, passes with 1..0 alone and exit 0.)
        said = [line.strip() for line in lines if line.strip() and line not in ("TAP version 13", "1..0")]
        errors = [line for line in said if line.startswith('"error"')]
        if code != 0 and not errors:
            errors = [line for line in said if "error" in line] or said[-1:]
        self.gave_up = "1..0" in lines and bool(errors) and not (self.passed or self.failed or self.skipped)
        if self.gave_up:
            self.failures.append(f"no checks run (1..0, exit {code}): " + errors[0][:250])

    def cell(self) -> str:
        text = f"{self.passed:>3} {self.failed:>3} {self.skipped:>3}"
        for flag, word in ((self.crashed, "crashed"), (self.gave_up, "gave up"), (self.exited, "exit!=0")):
            if flag:
                return f"{text} {word}"
        return f"{text} no TAP" if self.untapped else f"{text}        "


def mounts_under(path: str) -> list[str]:
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(path + "/")]


def unmount_under(path: str) -> list[str]:
    """What is mounted below `path` (a test's bundle left in the host's namespace), detached."""
    found = mounts_under(path)
    for target in sorted(found, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)
    return found


def run_one(test: str, runtime: str, src: str, tmp: str, timeout: float) -> Counts:
    env = dict(os.environ, RUNTIME=runtime, TMPDIR=tmp)
    try:
        done = subprocess.run([test], cwd=src, env=env, capture_output=True, text=True, timeout=timeout)
        return Counts(done.stdout + done.stderr, done.returncode)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        counts = Counts(out, -1)
        counts.failures.append(f"timed out after {timeout:.0f} s")
        counts.crashed = True
        return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="a runtime-tools checkout (commit 0105384)")
    ap.add_argument("--only", nargs="*", default=[], help="these validation tests only (by name)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per test and runtime (default 120)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("oci_validation: run as root")
    src = os.path.abspath(args.src)
    before = cgroup_dirs()
    controls = subtree_controls()
    work = tempfile.mkdtemp(prefix="minirun-ocival-", dir="/var/tmp")
    # searchable by all (not readable): a user namespace's root, an unprivileged host uid, must
    # reach the bundles below it (linux_uid_mappings, linux_ns_nopath), with runc as with ours
    os.chmod(work, 0o711)
    leftovers: list[str] = []
    removed = 0
    try:
        tests = build(src, work)
        if args.only:
            tests = [t for t in tests if os.path.basename(t)[: -len(".t")] in args.only]
        runtimes = {
            "runc": wrapper(os.path.join(work, "runc"), ["runc", "--root", os.path.join(work, "runc-root")]),
            "minirun-oci": wrapper(
                os.path.join(work, "minirun-oci"),
                [f"MINIRUN_CGROUP_PARENT={PARENT}", MINIRUN_OCI, "--root", os.path.join(work, "minirun-root")],
            ),
        }
        tmp = os.path.join(work, "bundles")
        os.makedirs(tmp)
        results: dict[str, dict[str, Counts]] = {}
        print("oci_validation: runtime-tools' validation suite, each test with runc and with minirun-oci")
        print(f"  source : {src} ({len(tests)} tests)")
        print(f"  {'test':<36} {'runc: ok not skip':<26} {'minirun-oci: ok not skip':<26}")
        for test in tests:
            name = os.path.basename(test)[: -len(".t")]
            results[name] = {}
            for rt, path in runtimes.items():
                results[name][rt] = run_one(test, path, src, tmp, args.timeout)
                left = unmount_under(tmp)
                if left:  # the runtime (or the test) mounted in the host's namespace
                    results[name][rt].failures.append(f"left {len(left)} mounts in the host's namespace: {left[0]}")
                    leftovers.append(f"{name} with {rt}: {len(left)} mounts (unmounted)")
            row = results[name]
            print(f"  {name:<36} {row['runc'].cell():<26} {row['minirun-oci'].cell():<26}", flush=True)
        for rt in runtimes:
            rows = [r[rt] for r in results.values()]
            total = sum(c.passed for c in rows), sum(c.failed for c in rows), sum(c.skipped for c in rows)
            crashed, gave_up = sum(c.crashed for c in rows), sum(c.gave_up for c in rows)
            exited, untapped = sum(c.exited for c in rows), sum(c.untapped for c in rows)
            print(
                f"  total {rt:<12}: {total[0]} ok, {total[1]} not ok, {total[2]} skipped; {crashed} tests "
                f"crashed, {gave_up} gave up before a check, {exited} failed after their checks; "
                f"{untapped} passed without TAP"
            )
        for rt in runtimes:
            print(f"  {rt}'s failures (each with the other's result for the same test):")
            other_rt = "runc" if rt != "runc" else "minirun-oci"
            for name, row in results.items():
                for failure in row[rt].failures:
                    other = row[other_rt]
                    verdict = f"{other_rt}: " + (
                        "crashed"
                        if other.crashed
                        else "gave up"
                        if other.gave_up
                        else "exit!=0"
                        if other.exited
                        else f"{other.failed} not ok"
                    )
                    print(f"    {name}: {failure[:300]}  [{verdict}]")
    finally:
        # the suite's relative cgroupsPath leaves its parents (testdir/cgrouptest) with both
        # runtimes, which remove only the container's own dir: removed here, counted, not failed
        new = {d for d in cgroup_dirs() - before if SUITES_CGROUP.search(d) or f"/{PARENT}" in d}
        for directory in sorted(new, key=len, reverse=True):
            try:
                os.rmdir(directory)
                removed += 1
            except OSError:
                leftovers.append(f"{directory} (not empty, kept)")
        leftovers += [f"{m} (unmounted)" for m in unmount_under(work)]
        leftovers += restore_subtree_controls(controls)
        if not mounts_under(work):  # never remove through a mount
            shutil.rmtree(work, ignore_errors=True)
    print(f"  cleaned up  : {removed} cgroup dirs of the suite's naming and this run's parent, removed")
    if leftovers:
        print("  leftovers   : " + "; ".join(x.strip() for x in leftovers))
        return 1
    print("  leftovers   : none (no cgroup dirs, mounts or work dir remain)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
