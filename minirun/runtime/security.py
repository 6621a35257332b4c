"""What the container's process may do: its user, capabilities, no_new_privs, open fds, seccomp.

Runs in PID 1 after pivot_root, just before exec (and in `exec`, around setns). python-prctl
is imported here, at the top, on purpose: a lazy import inside apply_security
would run after pivot_root (or setns into the mount namespace), where the interpreter's
site-packages and lib-dynload no longer exist. Only the container's process imports this
module. It takes python-prctl's C half, `_prctl`, alone: the Python half builds its friendly
objects at import, ~0.8 ms of every container's start (and of every exec) for calls this module
makes plainly.
"""

from __future__ import annotations

import errno
import os
import stat  # os imported it already: free, and here before any pivot_root

import _prctl

from minirun import linux
from minirun.errors import MinirunError, SyscallError
from minirun.records import Record
from minirun.runtime.privileges import CAPABILITIES, DEFAULT_CAPABILITIES, capability_number

TYPE_CHECKING = False  # not typing's: importing typing costs ~6 ms on the start path
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from minirun.runtime.seccomp import Program

_MAX_ID = 2**31 - 1  # runc's range for uids and gids


class User(Record):
    """Who the process runs as."""

    uid: int
    gid: int
    groups: list[int]  # supplementary groups, for setgroups(2)
    home: str
    DEFAULTS = {"groups": list, "home": "/"}


# --- users: docker's -u rules (runc's GetExecUser), pure ---


def _atoi(text: str) -> int | None:
    """Go's strconv.Atoi: optional sign, ASCII digits, nothing else (int() would take "1_0")."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not (digits.isascii() and digits.isdigit()):
        return None
    return int(text)


def _lines(text: str, fields: int) -> Iterable[list[str]]:
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        yield parts + [""] * (fields - len(parts))


# plain tuples, not dataclasses: each dataclass costs ~0.5 ms of import on the start path
def _passwd(text: str) -> list[tuple[str, int, int, str]]:
    """(name, uid, gid, home) per valid line."""
    entries = []
    for name, _pw, uid, gid, _gecos, home, *_ in _lines(text, 7):
        uid_n, gid_n = _atoi(uid), _atoi(gid)
        if uid_n is not None and gid_n is not None:  # a malformed line matches nothing
            entries.append((name, uid_n, gid_n, home))
    return entries


def _group(text: str) -> list[tuple[str, int, list[str]]]:
    """(name, gid, members) per valid line."""
    entries = []
    for name, _pw, gid, members, *_ in _lines(text, 4):
        gid_n = _atoi(gid)
        if gid_n is not None:
            entries.append((name, gid_n, [m.strip() for m in members.split(",") if m.strip()]))
    return entries


def _in_range(value: int) -> int:
    if not 0 <= value <= _MAX_ID:
        raise MinirunError(f"uids and gids must be in range 0-{_MAX_ID}")
    return value


def resolve_user(spec: str | None, passwd: str, group: str) -> User:
    """docker's `-u`: `name`, `uid`, `name:group`, `uid:gid` (or none: root) against the image's files.

    A number is always an id: looked up for its entry, and allowed without one. A user found
    by name or id brings its gid and home and, unless a group is given, the supplementary
    groups that list it as a member.
    """
    user_arg, _, rest = (spec or "").partition(":")
    group_arg = rest.split(":")[0]  # runc ignores a third field
    uid_arg, gid_arg = _atoi(user_arg), _atoi(group_arg)

    if not user_arg:
        match = next((u for u in _passwd(passwd) if u[1] == 0), None)
    elif uid_arg is not None:
        match = next((u for u in _passwd(passwd) if u[1] == uid_arg), None)
    else:
        match = next((u for u in _passwd(passwd) if u[0] == user_arg), None)

    if match is not None:
        name, uid, gid, home = match
        user = User(uid, gid, [], home)
    elif user_arg and uid_arg is None:
        raise MinirunError(f"unable to find user {user_arg}: no matching entries in passwd file")
    else:
        user = User(_in_range(uid_arg or 0), 0, [], "/")

    if group_arg:
        groups = _group(group)
        found = next((g for g in groups if (g[1] == gid_arg if gid_arg is not None else g[0] == group_arg)), None)
        if found is not None:
            user.gid = found[1]
        elif gid_arg is None:
            raise MinirunError(f"unable to find group {group_arg}: no matching entries in group file")
        else:
            user.gid = _in_range(gid_arg)
    elif match is not None:
        # supplementary groups only in the implicit form, as runc: an explicit group is the only one
        for _name, gid, members in _group(group):
            if name in members and gid not in user.groups:
                user.groups.append(gid)
    # ids the image's files give are checked too: (uid_t)-1 in a passwd line would make
    # setresuid(2) leave the process root ("unchanged"), where runc's setuid(2) fails
    for value in (user.uid, user.gid, *user.groups):
        _in_range(value)
    return user


def added_groups(specs: Iterable[str], group: str) -> list[int]:
    """docker's --group-add: each a group of the container's /etc/group by name, or a gid (which
    needs no entry), in order."""
    groups = _group(group)
    gids = []
    for spec in specs:
        found = next((g[1] for g in groups if g[0] == spec), None)
        if found is None:
            number = _atoi(spec)
            if number is None:
                raise MinirunError(f"unable to find group {spec}: no matching entries in group file")
            found = number
        gids.append(_in_range(found))
    return gids


def read_user_db(root: str = "/") -> tuple[str, str]:
    """The text of `root`/etc/passwd and /etc/group; a missing file reads as empty.

    Read after pivot_root: before it, a symlinked /etc/passwd in the image would be read on the
    host's terms.
    """
    return _read(os.path.join(root, "etc/passwd")), _read(os.path.join(root, "etc/group"))


USER_DB_LIMIT = 1 << 20  # bytes of /etc/passwd or /etc/group read, at most (fsutil's limit)


def _read(path: str) -> str:
    """The file's text, at most USER_DB_LIMIT bytes: the image or the container chooses what is
    there, and a link to /dev/zero read whole filled memory until the OOM killer came (runc's
    reader stops at a 64 KiB line). A device gives what it has (a link to /dev/null: empty, as in
    docker); a FIFO is read as runc reads it, to its end (test_exec.py traps an exec with one)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return ""
    chunks: list[bytes] = []
    size = 0
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            return ""
        while size <= USER_DB_LIMIT and (data := os.read(fd, USER_DB_LIMIT + 1 - size)):
            chunks.append(data)
            size += len(data)
    finally:
        os.close(fd)
    if size > USER_DB_LIMIT:
        raise MinirunError(f"cannot resolve the container's user: {path} is over {USER_DB_LIMIT} bytes")
    return b"".join(chunks).decode("utf-8", "surrogateescape")


# --- the process itself ---


def new_session_keyring() -> None:
    """Leave the session keyring the caller's shell or service left us (its keys, readable by
    uid 0 with keyctl(2)) for a new, empty, anonymous one, as runc does for every container
    process. docker's profile denies keyctl, but `seccomp=unconfined`, podman's profile and an
    OCI bundle's own (Kubernetes' default is none) allow it. Before any filter goes in. A kernel
    without keys (ENOSYS), or a filter above ours that already denies keyctl (EPERM: then the
    container cannot reach any keyring either), leaves nothing to hide."""
    try:
        linux.join_session_keyring()
    except SyscallError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EPERM):
            raise


def lock_down(
    user: User,
    capabilities: Iterable[str] = DEFAULT_CAPABILITIES,
    no_new_privileges: bool = True,
    seccomp: Program | None = None,
    keep_fds: Iterable[int] = (),
    capability_sets: Mapping[str, list[str]] | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """The last steps before execve: become `user` with at most `capabilities`, keep no fd but
    0-2 and `keep_fds`, and install the `seccomp` program (seccomp.Program) last of all.

    The filter goes in after no_new_privs, when nothing but execve is left to do. Without
    no_new_privs, loading a filter needs CAP_SYS_ADMIN, so it goes in before the capabilities
    are dropped (as runc does), and the filter must allow the steps after it (the default does).

    `capability_sets` (an OCI process's five sets) replaces docker's rule for `capabilities`;
    `ready` runs just before the filter goes in: an OCI container's PID 1 waits there for `start`
    (runc's exec fifo), so a profile need not allow the wait.
    """
    if capability_sets is not None:
        capabilities = capability_sets.get("bounding") or []
    if seccomp is not None and not no_new_privileges:
        _drop_bounding(capabilities)
        seccomp.install()
        seccomp = None
    apply_security(user, capabilities, no_new_privileges, capability_sets)
    # Only 0-2 cross into the container (runc CVE-2024-21626 leaked a host dir fd); an error
    # pipe is close-on-exec and closes itself.
    linux.close_fds(keep=keep_fds)
    if ready is not None:
        ready()
    if seccomp is not None:
        seccomp.install()


# what exec's stage 2 still needs beyond the container's capabilities, to become its user and own
# its terminal (lock_down, tty.setup_console): all of them in docker's default set
_SETUP_CAPABILITIES = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER")


def confine_before_entering(
    capabilities: Iterable[str],
    no_new_privileges: bool,
    seccomp: Program | None,
    capability_sets: Mapping[str, list[str]] | None = None,
) -> None:
    """exec's stage 1, in the container's namespaces, before it forks the process that shows up
    in the container's PID namespace: no_new_privs and the `seccomp` filter on, and no capability
    kept that the container (`capabilities`, or an OCI process's sets) lacks but those stage 2
    needs for its setup. A root there with CAP_SYS_PTRACE (which passes the non-dumpable check)
    could attach to stage 2 and run any syscall in it: with every capability of the host's root
    and no filter, that was a way out (open_by_handle_at, finit_module). Stage 2's setup then
    runs under the filter; docker's and podman's profiles allow it."""
    names = set(capabilities)
    if capability_sets is not None:
        names = {name for kind in capability_sets.values() for name in kind or []}
    keep = {capability_number(name) for name in names | set(_SETUP_CAPABILITIES)}
    if no_new_privileges:
        _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)
    if seccomp is not None:
        seccomp.install()  # (without no_new_privs this takes CAP_SYS_ADMIN: before the drop)
    drop = [cap for cap in range(_prctl.CAP_LAST_CAP + 1) if cap not in keep]
    _prctl.set_caps([], [], [], drop, drop, [])


def apply_security(
    user: User,
    capabilities: Iterable[str] = DEFAULT_CAPABILITIES,
    no_new_privileges: bool = True,
    capability_sets: Mapping[str, list[str]] | None = None,
) -> None:
    """Become `user` with at most `capabilities`, and (with no_new_privileges) no way back up.

    The bounding set is what execve can ever grant, so it is the real limit: root gets exactly
    `capabilities` (permitted and effective), anyone else nothing until a file capability
    grants some, and no_new_privs forbids even that. Inheritable stays empty (CVE-2022-24769).
    """
    if capability_sets is not None:
        _apply_sets(user, capability_sets)
        if no_new_privileges:
            _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)
        return
    keep = _drop_bounding(capabilities)
    # the ids, while CAP_SETGID and CAP_SETUID are still effective (even if not kept);
    # setuid from root to anyone else clears permitted and effective: no keepcaps needed
    os.setgroups(user.groups)
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    # one capset: root keeps exactly `keep`, others nothing; clearing inheritable clears ambient
    every = list(range(_prctl.CAP_LAST_CAP + 1))
    drop = every if user.uid != 0 else [cap for cap in every if cap not in keep]
    # (effective, permitted, inheritable) to raise, then the same three to clear
    _prctl.set_caps([], [], [], drop, drop, every)
    if no_new_privileges:
        # survives fork and execve; setuid binaries and file capabilities grant nothing
        _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)


_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE = 47, 2


def _apply_sets(user: User, sets: Mapping[str, list[str]]) -> None:
    """An OCI process's capabilities as runc sets them: the bounding set, the ids (keeping the
    permitted set across setuid, so a non-root user may hold some), then effective, permitted and
    inheritable exactly as given, then each ambient one the kernel allows (runc ignores the rest:
    an ambient capability must be permitted and inheritable)."""
    _drop_bounding(sets.get("bounding") or [])
    if user.uid != 0:
        _prctl.prctl(_prctl.PR_SET_KEEPCAPS, 1)
    os.setgroups(user.groups)
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    if user.uid != 0:
        _prctl.prctl(_prctl.PR_SET_KEEPCAPS, 0)
    every = list(range(_prctl.CAP_LAST_CAP + 1))
    chosen = [{capability_number(n) for n in sets.get(k) or []} for k in ("effective", "permitted", "inheritable")]
    try:
        _prctl.set_caps(*[sorted(c) for c in chosen], *[[n for n in every if n not in c] for c in chosen])
    except PermissionError:
        raise MinirunError(_unheld(chosen[0] | chosen[1] | chosen[2])) from None
    for name in sets.get("ambient") or []:
        try:
            linux.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, capability_number(name))
        except MinirunError:
            pass


def _unheld(wanted: set[int]) -> str:
    """Why capset(2) refused: capabilities the runtime itself does not hold (its own bounding set
    lacks them: the runtime runs confined), named."""
    names = {number: name for name, number in CAPABILITIES.items()}
    missing = [names.get(n, str(n)) for n in sorted(wanted) if not _prctl.prctl(_prctl.PR_CAPBSET_READ, n)]
    if not missing:
        return "capset: operation not permitted"
    return f"unable to apply caps: {', '.join(missing)} not in the runtime's own bounding set"


def _drop_bounding(capabilities: Iterable[str]) -> set[int]:
    """The bounding set first (PR_CAPBSET_DROP needs CAP_SETPCAP, which may not be kept); returns
    the numbers kept. Dropping what is already gone is a no-op, so a second call is free."""
    keep = {capability_number(name) for name in capabilities}
    last = _last_cap(_prctl.CAP_LAST_CAP)
    for cap in range(last + 1):
        if cap not in keep and _prctl.prctl(_prctl.PR_CAPBSET_READ, cap):
            _prctl.prctl(_prctl.PR_CAPBSET_DROP, cap)
    return keep


_PR_CAPBSET_READ = 23


def _last_cap(known: int) -> int:
    """The kernel's highest capability, asked of the kernel (PR_CAPBSET_READ answers EINVAL past
    it), never read from /proc/sys/kernel/cap_last_cap: this runs after pivot_root (or, for exec,
    in PID 1's root), where that file is whatever the container shows there (an OCI bundle's
    /proc may be a dir of the image's, PID 1 may chroot into a dir of its own), and a "0" there
    left every capability in the bounding set for execve to hand out. Refuse one python-prctl
    cannot drop (fail closed)."""
    if _kernel_has_cap(known + 1):
        last = known + 1
        while _kernel_has_cap(last + 1):
            last += 1
        raise MinirunError(
            f"the kernel has capabilities up to {last}, python-prctl knows {known}: "
            "cannot drop them from the bounding set"
        )
    last = known
    while last > 0 and not _kernel_has_cap(last):  # an older kernel than python-prctl
        last -= 1
    return last


def _kernel_has_cap(number: int) -> bool:
    try:
        linux.prctl(_PR_CAPBSET_READ, number)
    except SyscallError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    return True


def set_non_dumpable() -> None:
    """PR_SET_DUMPABLE 0 before joining a container's namespaces (`exec`).

    A dumpable process can be ptraced and its /proc/PID/exe opened by the container's root:
    runc CVE-2019-5736 overwrote the host's runc binary that way.
    """
    _prctl.prctl(_prctl.PR_SET_DUMPABLE, 0)
