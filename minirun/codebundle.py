"""minirun's modules compiled into one file and imported from it, for the `minirun` command.

A verb imports 50 to 90 of them. Through importlib's path finder each one costs a dozen
Python-level calls, stats, an open and a read of its .pyc before its code runs: about 3 ms of a
30 ms `run`. The launcher (launcher.py) writes the bundle, and its command installs this finder
before the first import of a verb: a dict lookup, a stat, an fstat and a pread a module.

A module comes from the bundle only while its source file has the size and mtime it was compiled
from, as a .pyc is checked: an edited module, or one the bundle lacks, takes the usual way. So
does every module once the bundle's descriptor is no longer the bundle's (a child's close_fds).

The file sits beside the package's own bytecode, named for the interpreter as a .pyc is:
minirun/__pycache__/bundle.<cache tag>.bin. It holds an 8-byte length, the marshalled index
(the interpreter's magic number and optimization level, then {module: (source, is_package,
mtime_ns, size, offset, length)}) and each module's marshalled code, at its offset from the end
of the index. It is only ever replaced by a rename, never rewritten in place: a process that
holds the old one reads the old one's offsets in it (and a descriptor whose file changed size or
mtime is not trusted either). A bundle that cannot be read changes nothing.

Its modules' loader reads code only: minirun reads its data files by __file__, not through
importlib.resources or pkgutil.get_data, which it does not serve. A module made a package (a
new minirun/x/__init__.py beside an unchanged minirun/x.py) needs the bundle written again, as
the launcher does at every setup.
"""

# (no `from __future__ import annotations` here: this module is imported before the bundle serves
# any, and that statement would import __future__ after all; see _compiled)
import marshal
import os
import sys

TYPE_CHECKING = False  # not typing's: this module is the first of every verb's
if TYPE_CHECKING:
    from types import CodeType

_LENGTH = 8  # the index's length, little-endian


def bundle_path() -> str:
    package = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(package, "__pycache__", f"bundle.{sys.implementation.cache_tag}.bin")


def _stamp() -> tuple[bytes, int]:
    """This interpreter's bytecode: the .pyc header's magic number, and -O's level (asserts)."""
    return sys.modules["_frozen_importlib_external"].MAGIC_NUMBER, sys.flags.optimize


def build() -> bytes:
    """The bundle of every module of the package as its source files are now."""
    package = os.path.dirname(os.path.abspath(__file__))
    parent = os.path.dirname(package)
    index: dict[str, tuple[str, bool, int, int, int, int]] = {}
    codes = bytearray()
    for directory, subdirs, files in os.walk(package):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            source = os.path.join(directory, name)
            with open(source, "rb") as f:
                stat = os.fstat(f.fileno())
                data = f.read()
            dotted = os.path.relpath(source, parent)[: -len(".py")].replace(os.sep, ".")
            is_package = dotted.endswith(".__init__")
            if is_package:
                dotted = dotted[: -len(".__init__")]
            try:
                code = marshal.dumps(_compiled(data, source))
            except SyntaxError:  # left out: an import of it says so, the usual way
                continue
            index[dotted] = (source, is_package, stat.st_mtime_ns, stat.st_size, len(codes), len(code))
            codes += code
    head = marshal.dumps((_stamp(), index))
    return len(head).to_bytes(_LENGTH, "little") + head + codes


def _compiled(data: bytes, source: str) -> "CodeType":
    """A module's code as the interpreter compiles it, but for `from __future__ import
    annotations`: the feature is set by flag and the statement left out, since at run time it is
    also an import of the `__future__` module (~0.2 ms, the first time, of every verb)."""
    import __future__

    import ast

    tree = ast.parse(data, source)
    feature = __future__.annotations
    kept = [node for node in tree.body if not _annotations_future(node)]
    if len(kept) == len(tree.body):
        return compile(tree, source, "exec", dont_inherit=True)
    tree.body = kept
    return compile(tree, source, "exec", flags=feature.compiler_flag, dont_inherit=True)


def _annotations_future(node: object) -> bool:
    import ast

    return (
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and [alias.name for alias in node.names] == ["annotations"]
        and node.names[0].asname is None
    )


class BundleFinder:
    """The finder and loader of the modules in the bundle at `path` (see above)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDONLY)  # not inherited by an exec
        try:
            stat = os.fstat(self._fd)
            self._identity = _identity(stat)
            length = int.from_bytes(os.pread(self._fd, _LENGTH, 0), "little")
            if length > stat.st_size - _LENGTH:
                raise ValueError(f"{path}: cut short")
            stamp, self._index = marshal.loads(os.pread(self._fd, length, _LENGTH))
            self._codes = _LENGTH + length  # where the offsets count from
            if stamp != _stamp() or not isinstance(self._index, dict):
                raise ValueError(f"{path}: a bundle of another interpreter, or of -O")
        except BaseException:
            os.close(self._fd)
            raise
        self._spec = type(sys.__spec__)  # importlib's ModuleSpec, without importing importlib

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        entry = self._index.get(name)
        if entry is None:
            return None
        source, is_package, mtime_ns, size, offset, length = entry
        try:
            stat = os.stat(source)
            ours = _identity(os.fstat(self._fd)) == self._identity
        except OSError:
            return None
        if not ours or stat.st_mtime_ns != mtime_ns or stat.st_size != size:
            return None
        # a loader by its methods alone: importlib.abc's base class would cost an import
        spec = self._spec(name, self, origin=source, is_package=is_package)  # type: ignore[arg-type]
        spec.has_location = True  # __file__ is the source's: tracebacks and linecache read it
        spec.loader_state = (offset, length)
        if is_package:
            spec.submodule_search_locations = [os.path.dirname(source)]
        return spec

    def create_module(self, spec: object) -> None:
        return None  # the default module

    def exec_module(self, module: object) -> None:
        offset, length = module.__spec__.loader_state  # type: ignore[attr-defined]
        exec(marshal.loads(os.pread(self._fd, length, self._codes + offset)), module.__dict__)


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def install() -> None:
    """Import minirun's modules from the bundle from now on, where there is a usable one."""
    try:
        finder = BundleFinder(bundle_path())
    except Exception:  # none (never written, another interpreter's, damaged): the usual imports
        return
    sys.meta_path.insert(0, finder)  # type: ignore[arg-type]


def write() -> str:
    """(Re)write the bundle for this interpreter, by a rename alone (see above); its path."""
    from minirun.atomicfile import write_all

    path = bundle_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        try:
            write_all(fd, build())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
