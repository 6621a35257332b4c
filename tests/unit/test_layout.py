"""The house's rules that import-linter does not check: no module uses another module's private
names (`_x`), and the packages stay as the README's layout names them."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import minirun

PACKAGE = Path(minirun.__file__).parent


@functools.cache
def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(name: str, path: Path) -> list[str]:
    """`from minirun.x import _y`, and `x._y` where x names a minirun module imported here."""
    tree = ast.parse(path.read_text(), str(path))
    imported_modules: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("minirun"):
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                if target in modules():
                    imported_modules.add(alias.asname or alias.name)
                elif private(alias.name) and node.module != name:
                    found.append(f"{path.name}:{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("minirun.") and alias.asname:
                    imported_modules.add(alias.asname)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported_modules
            and private(node.attr)
        ):
            found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    found = [use for name, path in modules().items() for use in private_uses(name, path)]
    assert not found, "\n".join(found)


def test_the_top_level_holds_only_the_leaves():
    """Everything else lives in a package of the layout (README, pyproject's layers contract)."""
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == {
        "__init__",
        "__main__",
        "errors",
        "linux",
        "procs",
        "humanize",
        "hostwide",
        "atomicfile",
        "events",
        "childfailure",
        "helpers",
        "records",
        "leanjson",
        "timestamps",
        "launcher",
        "codebundle",
    }, top
