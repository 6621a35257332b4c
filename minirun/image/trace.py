"""`trace`: how the merged view answers for one path, layer by layer from the top.

Overlay's lookup rules, replayed on the layer dirs (no mount needed):
- a directory of the merged view is the union of the same directory in each layer, from the
  topmost layer that has it down to the first layer where it is opaque, or where a whiteout or a
  non-directory stands at its path (those end the union; a non-directory under a dir is ignored);
- a name inside that directory is looked up only in those contributing layers, topmost first: the
  first entry found answers (a whiteout answers "no such file"); a directory answer merges on;
- a symlink in a parent component is followed inside the merged view (an absolute target starts
  again at the merged root, `..` never climbs above it), as the container's own lookups do.
minirun mounts with redirect_dir and metacopy off, so every layer is searched by name alone.
Nothing here writes: the layer dirs are read through dir fds opened with O_NOFOLLOW, so a symlink
inside a layer (even a running container's upper) never leads the walk onto the host.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from minirun.errors import MinirunError, UsageError
from minirun.humanize import ellipsis, human_size
from minirun.layer.whiteouts import is_opaque, is_whiteout
from minirun.store import Store
from minirun.store.images import Image

SERVES, MERGES, HIDES, PASSES, SHADOWED = "serves", "merges", "hides", "passes", "shadowed"
MAX_SYMLINKS = 40  # the kernel's limit on symlinks followed in one lookup (ELOOP)
UPPER, INIT = "upper", "init"
INIT_CREATED_BY = "minirun: stubs for mount points and provided files"
# What minirun mounts over the merged view in a running container (the trace still shows the layers).
_PROVIDED_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
_MOUNT_POINTS = ("/proc", "/sys", "/dev")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class TraceLayer:
    label: str  # "upper", "init", or the diff_id's first 12 hex digits
    diff_id: str  # "" for the upper and init layers
    dir: str
    created_by: str


@dataclass(frozen=True)
class Entry:
    """What one layer holds at one path (lstat, never followed)."""

    kind: str  # file, dir, symlink, whiteout, char device, block device, fifo, socket
    mode: int
    uid: int
    gid: int
    size: int
    target: str = ""  # a symlink's
    opaque: bool = False  # a dir's trusted.overlay.opaque=y
    rdev: int = 0

    def describe(self) -> str:
        if self.kind == "whiteout":
            return "whiteout"
        if self.kind == "symlink":
            return f"symlink -> {self.target}"
        perms = f"{stat.filemode(self.mode)} {self.uid}:{self.gid}"
        if self.kind == "dir":
            return f"dir, {perms}" + (", opaque" if self.opaque else "")
        if self.kind == "file":
            return f"file, {human_size(self.size)}, {perms}"
        if self.kind in ("char device", "block device"):
            return f"{self.kind} {os.major(self.rdev)}:{os.minor(self.rdev)}, {perms}"
        return f"{self.kind}, {perms}"


@dataclass
class TraceRow:
    layer: str
    diff_id: str
    created_by: str
    action: str
    detail: str
    entry: Entry | None  # what the layer holds at PATH itself (None: nothing)


@dataclass
class SymlinkHop:
    path: str  # the parent component that is a symlink in the merged view
    target: str
    layer: str  # the layer that serves the symlink


@dataclass
class Trace:
    path: str  # as asked, made absolute and normalized
    resolved: str  # after following symlinks in the parent components
    hops: list[SymlinkHop]
    rows: list[TraceRow]
    verdict: str
    exists: bool
    served_by: list[str]  # the serving layer, or every layer of a merged dir (topmost first)
    deleted_by: str | None  # the layer whose whiteout/opaque dir/file hides PATH
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "Path": self.path,
            "ResolvedPath": self.resolved,
            "Symlinks": [{"Path": h.path, "Target": h.target, "Layer": h.layer} for h in self.hops],
            "Layers": [
                {
                    "Layer": r.layer,
                    "DiffID": r.diff_id,
                    "CreatedBy": r.created_by,
                    "Action": r.action,
                    "Detail": r.detail,
                    "Entry": _entry_json(r.entry),
                }
                for r in self.rows
            ],
            "Exists": self.exists,
            "ServedBy": self.served_by,
            "DeletedBy": self.deleted_by,
            "Verdict": self.verdict,
            "Notes": self.notes,
        }


def _entry_json(entry: Entry | None) -> dict | None:
    if entry is None:
        return None
    data = asdict(entry)
    data["mode"] = f"{stat.S_IMODE(entry.mode):04o}"
    return {key.capitalize(): value for key, value in data.items()}


# -- the layer stacks ---------------------------------------------------------------------


def image_layers(store: Store, image: Image) -> list[TraceLayer]:
    """The image's layers, topmost first, each with the history entry that made it."""
    created_by: list[str] = []
    for entry in image.history:
        if not entry.get("empty_layer", False):
            created_by.append(entry.get("created_by", ""))
    layers = []
    for i, diff_id in enumerate(image.diff_ids):
        text = created_by[i] if i < len(created_by) else ""
        layers.append(TraceLayer(diff_id.split(":", 1)[-1][:12], diff_id, store.layers.diff_dir(diff_id), text))
    layers.reverse()
    return layers


def container_layers(store: Store, container) -> list[TraceLayer]:
    """The container's upper, the shared init layer, then its image's layers."""
    from minirun.store.initlayer import init_layer_dir

    image = store.images.get(container.config.image)
    command = " ".join(container.config.argv)
    upper = TraceLayer(UPPER, "", container.upper, f"container {container.name}: {command}")
    init = TraceLayer(INIT, "", init_layer_dir(store), INIT_CREATED_BY)
    return [upper, init] + image_layers(store, image)


def mount_notes(container, path: str) -> list[str]:
    """What minirun mounts over PATH in a running container: the layers answer beneath it."""
    config = container.config
    mounts = [(p, "a bind mount of the container's own " + os.path.basename(p)) for p in _PROVIDED_FILES]
    mounts += [(p, f"a fresh {p[1:]} mount") for p in _MOUNT_POINTS]
    mounts += [(target, f"the bind mount of {source}") for source, target, _ro in config.binds]
    mounts += [(target.split(":", 1)[0], "a tmpfs") for target in config.tmpfs]
    notes = []
    for point, what in mounts:
        point = "/" + os.path.normpath(point).strip("/")
        if path == point or path.startswith(point.rstrip("/") + "/"):
            notes.append(f"note: while the container runs, {point} is {what}, over what the layers hold")
    return notes


# -- reading one layer --------------------------------------------------------------------


def _entry_of(st: os.stat_result, target: str, opaque: bool) -> Entry:
    mode = st.st_mode
    if is_whiteout(st):
        kind = "whiteout"
    elif stat.S_ISREG(mode):
        kind = "file"
    elif stat.S_ISDIR(mode):
        kind = "dir"
    elif stat.S_ISLNK(mode):
        kind = "symlink"
    elif stat.S_ISCHR(mode):
        kind = "char device"
    elif stat.S_ISBLK(mode):
        kind = "block device"
    elif stat.S_ISFIFO(mode):
        kind = "fifo"
    else:
        kind = "socket"
    return Entry(kind, mode, st.st_uid, st.st_gid, st.st_size, target, opaque, st.st_rdev)


def _open_dir(root: str, parts: Sequence[str]) -> int | None:
    """An fd of dir `parts` inside layer `root`, every component opened without following a
    symlink; None when some component is missing or is not a directory in this layer."""
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return None
    for name in parts:
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = child
    return fd


def _probe(root: str, parts: Sequence[str]) -> Entry | None:
    """What layer `root` holds at `parts` (None: nothing, or its parent is not a dir here)."""
    if not parts:
        fd = _open_dir(root, ())
        if fd is None:
            return None
        try:
            return _entry_of(os.fstat(fd), "", is_opaque(fd))
        finally:
            os.close(fd)
    fd = _open_dir(root, parts[:-1])
    if fd is None:
        return None
    try:
        try:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        target, opaque = "", False
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(parts[-1], dir_fd=fd)
        elif stat.S_ISDIR(st.st_mode):
            try:
                child = os.open(parts[-1], _DIR_FLAGS, dir_fd=fd)
            except OSError:
                child = -1
            if child >= 0:
                opaque = is_opaque(child)
                os.close(child)
        return _entry_of(st, target, opaque)
    finally:
        os.close(fd)


def _listing(root: str, parts: Sequence[str]) -> dict[str, bool]:
    """Name -> is a whiteout, for dir `parts` of one layer."""
    fd = _open_dir(root, parts)
    if fd is None:
        return {}
    try:
        found = {}
        with os.scandir(fd) as it:
            for item in it:
                st = item.stat(follow_symlinks=False)
                found[item.name] = is_whiteout(st)
        return found
    finally:
        os.close(fd)


# -- the merged view ----------------------------------------------------------------------


@dataclass
class _Scan:
    """Overlay's lookup of one name among a merged dir's contributing layers."""

    answer: str  # "missing", "deleted" (a whiteout on top), "nondir", "dir"
    top: int | None  # the layer that answers
    contributors: list[int]  # for a dir: the layers whose dirs merge, topmost first
    reached: list[int]  # the layers consulted, in order
    end: int | None = None  # the layer that ended the search early (whiteout, opaque, non-dir)
    end_why: str = ""  # "whiteout", "opaque", or the kind of the non-dir (file, symlink, ...)


class _Merged:
    def __init__(self, layers: list[TraceLayer]) -> None:
        self.layers = layers
        self._entries: dict[tuple[int, tuple[str, ...]], Entry | None] = {}
        self._scans: dict[tuple[str, ...], _Scan] = {}

    def entry(self, index: int, parts: tuple[str, ...]) -> Entry | None:
        key = (index, parts)
        if key not in self._entries:
            self._entries[key] = _probe(self.layers[index].dir, parts)
        return self._entries[key]

    def scan(self, parts: tuple[str, ...]) -> _Scan:
        """How the merged view answers for `parts`; parents must be dirs (or it is missing).
        The parents not scanned yet are, from the nearest one scanned down: a loop, not
        recursion, as a path may have more components than Python's recursion limit."""
        found = self._scans.get(parts)
        if found is not None:
            return found
        known = len(parts) - 1
        while known >= 0 and parts[:known] not in self._scans:
            known -= 1
        for depth in range(known + 1, len(parts) + 1):
            here = parts[:depth]
            if not here:
                result = self._scan_in(list(range(len(self.layers))), here)
            else:
                parent = self._scans[here[:-1]]
                if parent.answer != "dir":
                    result = _Scan("missing", None, [], [])
                else:
                    result = self._scan_in(parent.contributors, here)
            self._scans[here] = result
        return self._scans[parts]

    def _scan_in(self, candidates: list[int], parts: tuple[str, ...]) -> _Scan:
        result = _Scan("missing", None, [], [])
        for index in candidates:
            entry = self.entry(index, parts)
            result.reached.append(index)
            if entry is None:
                continue
            if result.answer == "missing":
                result.top = index
                if entry.kind == "whiteout":
                    result.answer, result.end, result.end_why = "deleted", index, "whiteout"
                    break
                if entry.kind != "dir":
                    result.answer, result.end, result.end_why = "nondir", index, entry.kind
                    break
                result.answer = "dir"
                result.contributors.append(index)
            elif entry.kind == "dir":
                result.contributors.append(index)
            else:  # a whiteout or a non-dir under a dir ends the union there
                result.end, result.end_why = index, entry.kind
                break
            if entry.opaque:
                result.end, result.end_why = index, "opaque"
                break
        return result

    def resolve(self, path: str) -> tuple[tuple[str, ...], list[SymlinkHop]]:
        """Follow symlinks in the parent components inside the merged view; the last
        component stays as it is (trace reports a symlink itself, as lstat does)."""
        pending = [p for p in path.split("/") if p]
        done: list[str] = []
        hops: list[SymlinkHop] = []
        followed = 0
        while pending:
            name = pending.pop(0)
            if name == ".":
                continue
            if name == "..":
                if done:
                    done.pop()
                continue
            if not pending:
                done.append(name)
                break
            here = tuple(done + [name])
            found = self.scan(here)
            if found.answer == "nondir" and found.top is not None:
                entry = self.entry(found.top, here)
                if entry is not None and entry.kind == "symlink":
                    followed += 1
                    if followed > MAX_SYMLINKS:
                        raise MinirunError(f"{path}: {os.strerror(errno.ELOOP)}")
                    hops.append(SymlinkHop("/" + "/".join(here), entry.target, self.layers[found.top].label))
                    if entry.target.startswith("/"):
                        done = []
                    pending = [p for p in entry.target.split("/") if p] + pending
                    continue
            if found.answer != "dir":
                # Missing or not a dir: the lookup fails here; keep the rest as names.
                done.append(name)
                for rest in pending:
                    if rest == "..":
                        if done:
                            done.pop()
                    elif rest != ".":
                        done.append(rest)
                break
            done.append(name)
        return tuple(done), hops


# -- the trace ----------------------------------------------------------------------------


def _show(parts: Sequence[str]) -> str:
    return "/" + "/".join(parts)


def normalize_path(path: str) -> str:
    """PATH as trace reads it: absolute (a relative path starts at the root, as `docker cp`
    takes container paths), without empty or `.` components."""
    if not path:
        raise UsageError("PATH must not be empty")
    if "\0" in path:
        raise UsageError("PATH must not contain a NUL byte")
    # `..` stays: it is resolved after the symlinks before it, as the kernel does
    return "/" + "/".join(p for p in path.split("/") if p not in ("", "."))


def trace(layers: list[TraceLayer], path: str) -> Trace:
    """Trace PATH through `layers` (topmost first)."""
    asked = normalize_path(path)
    merged = _Merged(layers)
    parts, hops = merged.resolve(asked)
    shown = _show(parts)
    count = len(layers)
    action: dict[int, str] = {}
    detail: dict[int, str] = {}
    # why a layer was never consulted for PATH: (the layer that cut it off, how)
    hidden_by: dict[int, tuple[int, str]] = {}
    stoppers: list[tuple[int, str, tuple[str, ...]]] = []  # cut-offs above PATH: (layer, why, where)

    def cut_off(scan: _Scan, candidates: list[int], at: tuple[str, ...], final: bool) -> None:
        if scan.end is None:
            return
        if not final:
            stoppers.append((scan.end, scan.end_why, at))
        why = _cut_text(scan, at, layers[scan.end].label, final)
        for index in candidates[candidates.index(scan.end) + 1 :]:
            hidden_by.setdefault(index, (scan.end, why))

    # The parents, from the root down: which layers still take part, and who cut the others off.
    candidates = list(range(count))
    final = merged.scan(())
    cut_off(final, candidates, (), final=not parts)
    parent_ok = final.answer == "dir"
    for depth in range(1, len(parts) + 1):
        if not parent_ok:
            break
        candidates = final.contributors
        final = merged.scan(parts[:depth])
        cut_off(final, candidates, parts[:depth], final=depth == len(parts))
        if depth < len(parts):
            parent_ok = final.answer == "dir"
    if not parent_ok:
        final = _Scan("missing", None, [], [])

    # The layers the lookup of PATH itself consulted.
    for index in final.reached:
        entry = merged.entry(index, parts)
        if entry is None:
            action[index] = PASSES
        elif index == final.top:
            if final.answer == "deleted":
                action[index], detail[index] = HIDES, f"whiteout: deletes {shown}"
            else:
                action[index], detail[index] = SERVES, entry.describe()
        elif index in final.contributors:
            action[index], detail[index] = MERGES, entry.describe()
        elif entry.kind == "whiteout":
            action[index], detail[index] = HIDES, "whiteout: the dir's merge ends here"
        else:
            action[index] = SHADOWED
            detail[index] = f"{entry.describe()}; ignored under the dir above, the merge ends here"
    if final.answer == "dir":
        _describe_dir(merged, final, parts, action, detail)

    # The layers it did not consult: they hold PATH (shadowed) or not (passes).
    for index in range(count):
        if index in action:
            continue
        entry = merged.entry(index, parts)
        reason = hidden_by.get(index)
        if entry is not None:
            action[index] = SHADOWED
            detail[index] = entry.describe() + (f"; {reason[1]}" if reason else "")
        else:
            action[index] = PASSES

    # A cut-off above PATH hides it when nothing above answered and it really hid something
    # (a whiteout that deletes a parent deletes PATH with it, whatever the layers below hold).
    exists = final.answer in ("dir", "nondir")
    deleted_by: int | None = final.top if final.answer == "deleted" else None
    deleted_how = "deleted by {}" if deleted_by is not None else ""
    for index, why, at in sorted(stoppers):
        if action[index] != PASSES:
            continue
        hid_something = any(
            hidden_by.get(i, (-1, ""))[0] == index and merged.entry(i, parts) is not None
            for i in range(index + 1, count)
        )
        on_top = merged.scan(at).top == index
        if not exists and deleted_by is None and ((why == "whiteout" and on_top) or hid_something):
            action[index], detail[index] = HIDES, _hide_text(why, at, parts, on_top)
            deleted_by, deleted_how = index, _hidden_how(why, at, on_top)
        else:
            detail[index] = _stopper_note(why, at)

    rows = [
        TraceRow(
            layers[i].label,
            layers[i].diff_id,
            layers[i].created_by,
            action[i],
            detail.get(i, ""),
            merged.entry(i, parts),
        )
        for i in range(count)
    ]
    served: list[str] = []
    if final.answer == "dir":
        served = [layers[i].label for i in final.contributors]
    elif final.answer == "nondir" and final.top is not None:
        served = [layers[final.top].label]
    verdict = _verdict(layers, merged, shown, parts, final, deleted_by, deleted_how, parent_ok)
    return Trace(
        asked, shown, hops, rows, verdict, exists, served, layers[deleted_by].label if deleted_by is not None else None
    )


def _describe_dir(
    merged: _Merged, final: _Scan, parts: tuple[str, ...], action: dict[int, str], detail: dict[int, str]
) -> None:
    """A dir's rows: how many of the merged entries each contributing layer provides."""
    total, provided, whiteouts = _dir_contents(merged, final.contributors, parts)
    several = len(final.contributors) > 1
    for index in final.contributors:
        action[index] = MERGES if several else SERVES
        text = (
            f"{detail[index]}, {provided.get(index, 0)} of {_entries(total)}"
            if several
            else f"{detail[index]}, {_entries(total)}"
        )
        if whiteouts.get(index):
            text += f", {whiteouts[index]} whiteout" + ("s" if whiteouts[index] > 1 else "")
        detail[index] = text
    if several:
        detail[final.contributors[0]] += " (its mode and owner)"
    if final.end_why == "opaque" and final.end is not None:
        detail[final.end] += ": nothing below shows"


def _dir_contents(
    merged: _Merged, contributors: list[int], parts: tuple[str, ...]
) -> tuple[int, dict[int, int], dict[int, int]]:
    """(visible entries, entries each layer provides, whiteouts each layer applies): the
    topmost layer holding a name decides it, as in a listing of the merged dir."""
    owner: dict[str, tuple[int, bool]] = {}
    for index in contributors:
        for name, whiteout in _listing(merged.layers[index].dir, parts).items():
            owner.setdefault(name, (index, whiteout))
    provided: dict[int, int] = {}
    whiteouts: dict[int, int] = {}
    for index, whiteout in owner.values():
        bucket = whiteouts if whiteout else provided
        bucket[index] = bucket.get(index, 0) + 1
    return sum(provided.values()), provided, whiteouts


def _entries(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


def _name(label: str) -> str:
    return label if label in (UPPER, INIT) else f"layer {label}"


def _cut_text(scan: _Scan, at: Sequence[str], label: str, final: bool) -> str:
    where = _show(at)
    if final and scan.answer == "deleted":
        return f"deleted by the whiteout in {_name(label)}"
    if final and scan.answer == "nondir":
        return f"under the answer in {_name(label)}"
    if scan.end_why == "opaque":
        return f"hidden by the opaque dir {where} in {_name(label)}"
    if scan.end_why == "whiteout":
        return f"hidden by the whiteout at {where} in {_name(label)}"
    return f"hidden by the {scan.end_why} at {where} in {_name(label)}"


def _hide_text(why: str, at: Sequence[str], parts: Sequence[str], on_top: bool) -> str:
    """`on_top`: this layer answers for the parent itself (deletes it, or serves a non-dir
    there), rather than ending a merge of the parent below a dir of a higher layer."""
    where = _show(at)
    if why == "whiteout" and on_top:
        return f"whiteout at {where}: deletes {_show(parts)} with it"
    if why not in ("whiteout", "opaque") and on_top:
        return f"{where} is a {why} here: nothing can be below it"
    if why == "opaque":
        return f"opaque dir {where}: hides what the layers below hold there"
    return f"{'whiteout' if why == 'whiteout' else 'a ' + why} at {where}: hides what the layers below hold there"


def _hidden_how(why: str, at: Sequence[str], on_top: bool) -> str:
    """The verdict's words for a cut-off above PATH; `{}` is the layer."""
    where = _show(at)
    if why == "whiteout":
        return f"deleted with {where} by {{}}" if on_top else f"hidden by the whiteout at {where} in {{}}"
    if why == "opaque":
        return f"hidden by the opaque dir {where} of {{}}"
    return f"{where} is a {why} in {{}}" if on_top else f"hidden by the {why} at {where} in {{}}"


def _stopper_note(why: str, at: Sequence[str]) -> str:
    where = _show(at)
    return {"opaque": f"(opaque dir {where})", "whiteout": f"(whiteout at {where})"}.get(
        why, f"({where} is a {why} here)"
    )


def _verdict(
    layers: list[TraceLayer],
    merged: _Merged,
    shown: str,
    parts: tuple[str, ...],
    final: _Scan,
    deleted_by: int | None,
    deleted_how: str,
    parent_ok: bool,
) -> str:
    def who(index: int) -> str:
        layer = layers[index]
        return f"{_name(layer.label)} ({layer.created_by})" if layer.created_by else _name(layer.label)

    if final.answer == "dir" and final.top is not None:
        total = _dir_contents(merged, final.contributors, parts)[0]
        if len(final.contributors) == 1:
            return f"{shown}: a directory of {_entries(total)}, served by {who(final.top)}"
        names = ", ".join(layers[i].label for i in final.contributors)
        return (
            f"{shown}: a directory of {_entries(total)} merged from {len(final.contributors)} layers "
            f"({names}); mode and owner from {_name(layers[final.top].label)}"
        )
    if final.answer == "nondir" and final.top is not None:
        entry = merged.entry(final.top, parts)
        assert entry is not None
        what = {"file": f"a file ({human_size(entry.size)})", "symlink": f"a symlink -> {entry.target}"}.get(
            entry.kind, f"a {entry.kind}"
        )
        return f"{shown}: {what}, served by {who(final.top)}"
    if deleted_by is not None:
        return f"{shown} does not exist in the merged view: " + deleted_how.format(who(deleted_by))
    if not parent_ok:
        for depth in range(len(parts) - 1, 0, -1):
            scan = merged.scan(parts[:depth])
            entry = merged.entry(scan.top, parts[:depth]) if scan.top is not None else None
            if scan.answer == "nondir" and scan.top is not None and entry is not None:
                return (
                    f"{shown} does not exist in the merged view: {_show(parts[:depth])} is a {entry.kind}, "
                    f"not a directory; served by {who(scan.top)}"
                )
    return f"{shown} does not exist in the merged view: no layer has it"


def short_created_by(text: str, no_trunc: bool = False) -> str:
    """CREATED BY as `history` shows it: tabs as spaces, 45 columns with an ellipsis."""
    text = text.replace("\t", " ")
    return text if no_trunc else ellipsis(text, 45)
