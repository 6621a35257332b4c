"""`minirun-oci`: runc's command line. Global flags (--root, --log, --log-format, --debug...)
come before the command, the command's flags before its arguments; Go's single-dash long flags
(`-bundle`) are taken too. Errors: one stderr line and exit 1, and with --log a line in the log
(`--log-format json`: runc's {"level","msg","time"}, which containerd reads back)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from minirun.errors import MinirunError, one_line

_GLOBAL_VALUE = {"--root", "--log", "--log-format", "--criu", "--rootless"}
_GLOBAL_FLAG = {"--debug", "--systemd-cgroup"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise MinirunError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="minirun-oci", description="runc's command line over minirun's launch code")
    parser.add_argument("--root", default=os.environ.get("MINIRUN_OCI_ROOT", "/run/minirun-oci"))
    parser.add_argument("--log", default="")
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--systemd-cgroup", action="store_true")
    parser.add_argument("--criu", default="")
    parser.add_argument("--rootless", default="auto")
    parser.add_argument("-v", "--version", action="store_true")
    commands = parser.add_subparsers(dest="verb", parser_class=_Parser)

    def command(name: str, *, with_id: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name)
        if with_id:
            sub.add_argument("id")
        return sub

    def creating(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("-b", "--bundle", default=".")
        sub.add_argument("--pid-file", default="")
        sub.add_argument("--console-socket", default="")
        sub.add_argument("--preserve-fds", type=int, default=0)
        sub.add_argument("--no-pivot", action="store_true")
        sub.add_argument("--no-new-keyring", action="store_true")

    creating(command("create"))
    run = command("run")
    creating(run)
    run.add_argument("-d", "--detach", action="store_true")
    run.add_argument("--keep", action="store_true")
    command("start")
    state = command("state")
    del state
    kill = command("kill")
    kill.add_argument("signal", nargs="?", default="SIGTERM")
    kill.add_argument("-a", "--all", action="store_true")
    delete = command("delete")
    delete.add_argument("-f", "--force", action="store_true")
    listing = command("list", with_id=False)
    listing.add_argument("-f", "--format", default="table", choices=("table", "json"))
    listing.add_argument("-q", "--quiet", action="store_true")
    spec = command("spec", with_id=False)
    spec.add_argument("-b", "--bundle", default="")
    spec.add_argument("--rootless", action="store_true")
    command("features", with_id=False)
    command("pause")
    command("resume")
    ps = command("ps")
    ps.add_argument("-f", "--format", default="table", choices=("table", "json"))
    ps.add_argument("ps_args", nargs=argparse.REMAINDER)
    events = command("events")
    events.add_argument("--stats", action="store_true")
    events.add_argument("--interval", default="5s")
    update = command("update")
    update.add_argument("-r", "--resources", default="")
    update.add_argument("--memory", default="")
    update.add_argument("--memory-swap", default="")
    update.add_argument("--memory-reservation", default="")
    update.add_argument("--cpu-share", "--cpu-shares", dest="cpu_shares", default="")
    update.add_argument("--cpu-quota", default="")
    update.add_argument("--cpu-period", default="")
    update.add_argument("--cpuset-cpus", default="")
    update.add_argument("--cpuset-mems", default="")
    update.add_argument("--pids-limit", default="")
    update.add_argument("--blkio-weight", default="")
    execute = command("exec")
    execute.add_argument("command", nargs=argparse.REMAINDER)
    execute.add_argument("-p", "--process", default="")
    execute.add_argument("-t", "--tty", action="store_true")
    execute.add_argument("-d", "--detach", action="store_true")
    execute.add_argument("--pid-file", default="")
    execute.add_argument("--console-socket", default="")
    execute.add_argument("--cwd", default="")
    execute.add_argument("-e", "--env", action="append", default=[])
    execute.add_argument("-u", "--user", default="")
    execute.add_argument("-g", "--additional-gids", action="append", default=[])
    execute.add_argument("-c", "--cap", action="append", default=[])
    execute.add_argument("--no-new-privs", action="store_true")
    execute.add_argument("--preserve-fds", type=int, default=0)
    execute.add_argument("--process-label", default="")
    execute.add_argument("--apparmor", default="")
    execute.add_argument("--ignore-paused", action="store_true")
    return parser


def normalize(argv: list[str]) -> list[str]:
    """Go's flags: `-root x` and `--root=x` as argparse takes them (`--root x`), up to `--`."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + argv[i:]
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2 and arg[1].isalpha():
            name = arg[1:].split("=", 1)[0]
            if len(name) > 1 and "-" in name or name in _LONG_SINGLE_DASH:
                arg = "-" + arg
        out.append(arg)
    return out


_LONG_SINGLE_DASH = {
    "root",
    "log",
    "debug",
    "bundle",
    "detach",
    "process",
    "tty",
    "cwd",
    "env",
    "user",
    "cap",
    "force",
    "all",
    "format",
    "quiet",
    "stats",
    "interval",
    "resources",
    "memory",
    "keep",
}


_PROGRAM = False  # main() runs as the process itself, which may then re-exec (_seal_interpreter)


def main(argv: list[str] | None = None) -> None:
    global _PROGRAM
    _PROGRAM = argv is None
    sys.exit(run(sys.argv[1:] if argv is None else argv))


def _seal_interpreter() -> None:
    """Run on from the interpreter's binary seen through a read-only mount of its own, before any
    process of ours shows up in a container (runc CVE-2019-5736: /proc/PID/exe of PID 1 waiting
    for `start`, or of exec's stage 2, is the host's python, and a container root with
    CAP_SYS_PTRACE opened it and wrote it once no python was running: the next call of this
    runtime ran the container's code as the host's root). The binary is bound, detached and
    read-only (open_tree, mount_setattr), and exec'd from that mount's fd with the same argv and
    environment: /proc/PID/exe then opens read-only (EROFS), as runc's re-exec through a sealed
    copy of itself. Once per process: an exe already on a read-only mount is left as it is."""
    from minirun import linux

    if os.statvfs("/proc/self/exe").f_flag & os.ST_RDONLY:
        return
    binary = linux.open_tree(linux.AT_FDCWD, os.path.realpath("/proc/self/exe"), linux.OPEN_TREE_CLONE)
    try:
        linux.mount_setattr_fd(binary, linux.MOUNT_ATTR_RDONLY, recursive=False)
        sys.stdout.flush()
        sys.stderr.flush()
        # the same command line (sys.executable comes back from argv[0], the venv with it)
        linux.execveat_fd(binary, [sys.executable, *sys.orig_argv[1:]], dict(os.environ))
    finally:
        os.close(binary)


def run(argv: list[str]) -> int:
    from minirun.oci import runlog

    debug = False
    try:
        args = _parser().parse_args(normalize(argv))
        runlog.configure(args.log, args.log_format)
        debug = args.debug
        if args.version:
            from minirun.oci.config import OCI_VERSION

            print(f"minirun-oci version 0.1.0\nspec: {OCI_VERSION}")
            return 0
        if not args.verb:
            raise MinirunError("a command is needed: create, start, run, state, kill, delete, exec, list, spec...")
        return _dispatch(args)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        if debug:
            import traceback

            traceback.print_exception(exc)
        message = one_line(exc.message if isinstance(exc, MinirunError) else f"{type(exc).__name__}: {exc}")
        runlog.error(message)
        print(f"minirun-oci: error: {message}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    from minirun.oci import container

    root = os.path.abspath(args.root)
    name = args.verb
    if name == "spec":
        return _spec(args.bundle)
    if name == "features":
        from minirun.oci.spec import features

        print(json.dumps(features(), indent=4))
        return 0
    if name == "list":
        return _list(root, args.format, args.quiet)
    if _PROGRAM and name in ("create", "run", "exec"):
        _seal_interpreter()
    if name in ("create", "run"):
        opts = container.CreateOptions(
            args.bundle, args.pid_file, args.console_socket, args.preserve_fds, not args.no_new_keyring
        )
        if name == "create":
            container.create(root, args.id, opts)
            return 0
        return container.run(root, args.id, opts, args.detach)
    if name == "start":
        container.start(root, args.id)
    elif name == "state":
        from minirun.oci.state import State

        print(json.dumps(State(root, args.id).load().oci(), indent=2))
    elif name == "kill":
        container.kill(root, args.id, args.signal, args.all)
    elif name == "delete":
        container.delete(root, args.id, args.force)
    elif name in ("pause", "resume"):
        container.pause(root, args.id, name == "pause")
    elif name == "ps":
        return _ps(root, args)
    elif name == "events":
        return _events(root, args)
    elif name == "update":
        container.update(root, args.id, _update_resources(args))
    elif name == "exec":
        from minirun.oci import execute

        return execute.exec_command(root, args)
    return 0


def _spec(bundle: str) -> int:
    from minirun.oci.spec import default_spec

    path = os.path.join(bundle or ".", "config.json")
    if os.path.exists(path):
        raise MinirunError("File config.json exists. Remove it first.")
    with open(path, "x", encoding="utf-8") as f:
        f.write(json.dumps(default_spec(), indent="\t"))
    return 0


def _list(root: str, format_: str, quiet: bool) -> int:
    from minirun.oci.state import State, all_ids

    states = []
    for container_id in all_ids(root):
        try:
            states.append(State(root, container_id).load().oci())
        except MinirunError:
            continue
    if quiet:
        for state in states:
            print(state["id"])
    elif format_ == "json":
        print(json.dumps(states))
    else:
        rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
        rows += [[s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"] or "root"] for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("".join(cell.ljust(width + 3) for cell, width in zip(row[:-1], widths)) + row[-1])
    return 0


def _ps(root: str, args: argparse.Namespace) -> int:
    from minirun.oci import container

    pids = container.pids(root, args.id)
    if args.format == "json":
        print(json.dumps(pids))
        return 0
    import subprocess

    done = subprocess.run(["ps", *(args.ps_args or ["-ef"])], capture_output=True, text=True, check=False)
    lines = done.stdout.splitlines()
    if not lines:
        raise MinirunError(f"ps: {done.stderr.strip()}")
    header = lines[0].split()
    if "PID" not in header:
        raise MinirunError("ps: no PID column in its output")
    column = header.index("PID")
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            print(line)
    return 0


def _events(root: str, args: argparse.Namespace) -> int:
    import time

    from minirun.humanize import parse_go_duration
    from minirun.oci import container

    interval = parse_go_duration(args.interval) / 1e9
    while True:
        print(json.dumps(container.stats(root, args.id)), flush=True)
        if args.stats:
            return 0
        time.sleep(interval)


def _update_resources(args: argparse.Namespace) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if args.resources:
        source = sys.stdin if args.resources == "-" else open(args.resources, encoding="utf-8")  # noqa: SIM115
        with source:
            resources = json.load(source)
    memory, cpu = resources.setdefault("memory", {}), resources.setdefault("cpu", {})
    pairs = (
        (memory, "limit", args.memory),
        (memory, "swap", args.memory_swap),
        (memory, "reservation", args.memory_reservation),
        (cpu, "shares", args.cpu_shares),
        (cpu, "quota", args.cpu_quota),
        (cpu, "period", args.cpu_period),
    )
    for section, key, value in pairs:
        if value:
            section[key] = _bytes(value)
    if args.cpuset_cpus:
        cpu["cpus"] = args.cpuset_cpus
    if args.cpuset_mems:
        cpu["mems"] = args.cpuset_mems
    if args.pids_limit:
        resources["pids"] = {"limit": int(args.pids_limit)}
    if args.blkio_weight:
        resources.setdefault("blockIO", {})["weight"] = _bytes(args.blkio_weight)
    return resources


def _bytes(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    suffix = text[-1:].lower()
    try:
        return int(text[:-1]) * units[suffix] if suffix in units else int(text)
    except ValueError:
        raise MinirunError(f"invalid value {text!r}") from None


if __name__ == "__main__":
    main()
