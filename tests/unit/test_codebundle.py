"""The bundle of minirun's compiled modules (minirun/codebundle.py), on a copy of the package in a
temporary dir, in fresh interpreters started as the `minirun` command starts (`python -S -P`): it
serves the modules as their sources are, an edited module comes from its source, and a bundle
that cannot be trusted (another interpreter's, its descriptor gone) changes nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import minirun

PACKAGE = Path(minirun.__file__).parent

# What came from where, as JSON: {module: "bundle" | "usual"} for minirun's modules loaded.
REPORT = """
import json, sys
sys.path[:0] = [sys.argv[1]]
import minirun.codebundle
minirun.codebundle.install()
{body}
print(json.dumps({{
    name: "bundle" if type(module.__spec__.loader).__name__ == "BundleFinder" else "usual"
    for name, module in sys.modules.items() if name.startswith("minirun") and module.__spec__
}}))
"""


@pytest.fixture
def copy(tmp_path) -> Path:
    """The package copied (sources only) with a bundle written for it: the copy's parent dir."""
    shutil.copytree(PACKAGE, tmp_path / "minirun", ignore=shutil.ignore_patterns("__pycache__"))
    written = run(tmp_path, "import minirun.codebundle; print(minirun.codebundle.write())", install=False)
    assert written.strip().startswith(str(tmp_path / "minirun" / "__pycache__" / "bundle."))
    return tmp_path


def run(parent: Path, body: str, install: bool = True) -> str:
    script = REPORT.format(body=body) if install else f"import sys\nsys.path[:0] = [sys.argv[1]]\n{body}\n"
    done = subprocess.run(
        [sys.executable, "-S", "-P", "-c", script, str(parent)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_bundle_serves_the_modules_a_run_imports(copy):
    found = json.loads(run(copy, "import minirun.cli.main, minirun.runtime.launch, minirun.containers.foreground"))
    bundled = {name for name, where in found.items() if where == "bundle"}
    assert {"minirun.cli.main", "minirun.runtime.launch", "minirun.linux", "minirun.store"} <= bundled, found
    # imported before the finder: the usual way
    assert found["minirun"] == found["minirun.codebundle"] == "usual"
    assert set(found) - bundled == {"minirun", "minirun.codebundle"}, found
    where = run(copy, "import minirun.runtime.launch as m\nprint(m.__file__, m.start.__code__.co_filename)")
    assert where.split()[:2] == [str(copy / "minirun/runtime/launch.py")] * 2


def test_a_bundled_module_postpones_its_annotations_without_importing_future(copy):
    """`from __future__ import annotations` is a compiler flag in the bundle, not an import."""
    body = "import minirun.runtime.launch as m\nprint(m.start.__annotations__['plan'], '__future__' in sys.modules)"
    assert run(copy, body, install=False).split() == ["LaunchPlan", "True"]  # the usual import: both
    shown = run(copy, f"{body}\nraise SystemExit", install=True)
    assert shown.split() == ["LaunchPlan", "False"]


def test_an_edited_module_comes_from_its_source(copy):
    with open(copy / "minirun" / "errors.py", "a") as source:
        source.write("\nEDITED = 'since the bundle'\n")
    found = run(copy, "import minirun.errors, minirun.linux\nprint(minirun.errors.EDITED)")
    edited, report = found.splitlines()
    assert edited == "since the bundle"
    assert json.loads(report)["minirun.errors"] == "usual" and json.loads(report)["minirun.linux"] == "bundle"


def test_a_descriptor_no_longer_the_bundles_sends_imports_the_usual_way(copy):
    """A child closes every descriptor (close_fds) and opens others, which may get its number."""
    body = (
        "import os\n"
        "finder = sys.meta_path[0]\n"
        "os.close(finder._fd)\n"
        "other = os.open(sys.executable, os.O_RDONLY)\n"
        "assert other == finder._fd, (other, finder._fd)\n"
        "import minirun.linux"
    )
    assert json.loads(run(copy, body))["minirun.linux"] == "usual"


def test_another_interpreters_bundle_is_not_used(copy):
    bundle = next((copy / "minirun" / "__pycache__").glob("bundle.*.bin"))
    data = bytearray(bundle.read_bytes())
    at = data.index(bytes(sys.modules["_frozen_importlib_external"].MAGIC_NUMBER))
    data[at] ^= 0xFF  # the magic number of some other Python's bytecode
    bundle.write_bytes(bytes(data))
    found = json.loads(run(copy, "import minirun.linux"))
    assert found["minirun.linux"] == "usual"


def test_without_a_bundle_the_imports_are_the_usual_ones(copy):
    for bundle in (copy / "minirun" / "__pycache__").glob("bundle.*.bin"):
        bundle.unlink()
    assert json.loads(run(copy, "import minirun.cli.main"))["minirun.cli.main"] == "usual"


def test_a_bundle_rewritten_in_place_under_a_process_is_not_read(copy):
    """The bundle is replaced by a rename; one rewritten in place (cp, a full disk's fallback)
    has new offsets under an index read before: its descriptor is not trusted once the file's
    size or mtime changed, and the imports take the usual way."""
    body = (
        "import os\n"
        "bundle = minirun.codebundle.bundle_path()\n"
        "data = open(bundle, 'rb').read()\n"
        "with open(bundle, 'r+b') as f:\n"
        "    f.write(data[:8] + bytes(16) + data[8:])  # every offset moved\n"
        "import minirun.linux"
    )
    assert json.loads(run(copy, body))["minirun.linux"] == "usual"


@pytest.mark.parametrize("damage", ["length", "cut"])
def test_a_damaged_bundle_changes_nothing(copy, damage):
    bundle = next((copy / "minirun" / "__pycache__").glob("bundle.*.bin"))
    data = bundle.read_bytes()
    bundle.write_bytes(b"\xff" * 8 + data[8:] if damage == "length" else data[:100])
    assert json.loads(run(copy, "import minirun.cli.main"))["minirun.cli.main"] == "usual"


def test_a_bundle_of_another_optimization_level_is_not_used(copy):
    """Built under -O (no asserts), a bundle is not the plain interpreter's, as a .pyc's opt-1
    name says; the command runs python without -O."""
    done = subprocess.run(
        [sys.executable, "-S", "-P", "-O", "-c", "import sys; sys.path[:0] = [sys.argv[1]]\n"
         "import minirun.codebundle; minirun.codebundle.write()", str(copy)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(run(copy, "import minirun.linux"))["minirun.linux"] == "usual"


def test_a_module_that_does_not_compile_is_left_to_the_usual_import(copy):
    (copy / "minirun" / "broken.py").write_text("def (:\n")
    run(copy, "import minirun.codebundle; minirun.codebundle.write()", install=False)
    found = json.loads(run(copy, "import minirun.linux"))
    assert found["minirun.linux"] == "bundle"
