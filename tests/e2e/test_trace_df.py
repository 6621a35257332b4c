"""`trace` and `system df` against a real store and real containers.

trace is also checked against the kernel: for every path of a stacked image, a real overlay
mount of its layers must agree on whether the path exists, and the layer trace says serves it
must hold exactly the bytes the mount shows.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import pytest

from minirun.containers.container import Containers
from minirun.humanize import human_size
from tests.helpers import d, f, in_mount_ns, make_image, make_tar, sym


def traced(cli, target: str, path: str) -> dict:
    result = cli("trace", "--format", "json", target, path)
    assert result.code == 0, result
    return json.loads(result.out)


def actions(doc: dict) -> dict[str, str]:
    return {row["Layer"]: row["Action"] for row in doc["Layers"]}


def short(diff_id: str) -> str:
    return diff_id.split(":", 1)[1][:12]


def one_error_line(result) -> str:
    lines = result.err.strip().splitlines()
    assert result.code == 125, result
    assert len(lines) == 1 and lines[0].startswith("minirun: error: "), result.err
    return lines[0]


@pytest.fixture
def stacked(store, busybox):
    """busybox + L1 (config v1, /srv with a and b, /opt/x, /data -> srv) + L2 (config v2,
    deletes /etc/passwd, makes /srv opaque with c, adds /opt/y)."""
    layer1 = make_tar(
        [
            d("etc"),
            f("etc/config.yaml", "v1\n"),
            d("srv"),
            f("srv/a", "a"),
            f("srv/b", "b"),
            d("opt"),
            f("opt/x", "x"),
            sym("data", "srv"),
        ]
    )
    layer2 = make_tar(
        [
            d("etc"),
            f("etc/config.yaml", "v2\n"),
            f("etc/.wh.passwd"),
            d("srv"),
            f("srv/.wh..wh..opq"),
            f("srv/c", "c"),
            d("opt"),
            f("opt/y", "y"),
        ]
    )
    image = make_image(store, "stacked:1", [layer1, layer2], base=busybox)
    base, l1, l2 = (short(x) for x in image.diff_ids)
    return image, base, l1, l2


def test_a_file_in_two_layers_is_served_by_the_top_one(cli, stacked):
    _, base, l1, l2 = stacked
    doc = traced(cli, "stacked:1", "/etc/config.yaml")
    assert [row["Layer"] for row in doc["Layers"]] == [l2, l1, base]  # topmost first
    assert actions(doc) == {l2: "serves", l1: "shadowed", base: "passes"}
    assert doc["Exists"] and doc["ServedBy"] == [l2]
    assert doc["Layers"][0]["CreatedBy"] == "layer 1" and doc["Layers"][0]["Entry"]["Size"] == 3
    table = cli("trace", "stacked:1", "/etc/config.yaml").out.splitlines()
    assert table[0].split() == ["LAYER", "CREATED", "BY", "ACTION", "DETAIL"]
    assert table[1].split()[:5] == [l2, "layer", "1", "serves", "file,"]
    assert table[-1] == f"/etc/config.yaml: a file (3B), served by layer {l2} (layer 1)"


def test_a_whited_out_file_is_hidden_by_the_deleting_layer(cli, stacked):
    _, base, l1, l2 = stacked
    doc = traced(cli, "stacked:1", "/etc/passwd")
    assert actions(doc) == {l2: "hides", l1: "passes", base: "shadowed"}
    assert not doc["Exists"] and doc["DeletedBy"] == l2
    assert doc["Verdict"] == f"/etc/passwd does not exist in the merged view: deleted by layer {l2} (layer 1)"
    assert "deleted by" in cli("trace", "stacked:1", "/etc/passwd").out.splitlines()[-1]


def test_a_file_under_an_opaque_dir(cli, stacked):
    _, base, l1, l2 = stacked
    hidden = traced(cli, "stacked:1", "/srv/a")
    assert actions(hidden) == {l2: "hides", l1: "shadowed", base: "passes"}
    assert "opaque dir /srv" in hidden["Layers"][0]["Detail"] and not hidden["Exists"]
    assert hidden["DeletedBy"] == l2
    new = traced(cli, "stacked:1", "/srv/c")
    assert actions(new) == {l2: "serves", l1: "passes", base: "passes"}
    opaque = traced(cli, "stacked:1", "/srv")
    assert actions(opaque) == {l2: "serves", l1: "shadowed", base: "passes"}
    assert opaque["ServedBy"] == [l2] and opaque["Layers"][0]["Entry"]["Opaque"] is True


def test_a_dir_merged_from_two_layers(cli, stacked):
    _, base, l1, l2 = stacked
    doc = traced(cli, "stacked:1", "/opt")
    assert actions(doc) == {l2: "merges", l1: "merges", base: "passes"}
    assert doc["ServedBy"] == [l2, l1]
    assert doc["Verdict"] == (
        f"/opt: a directory of 2 entries merged from 2 layers ({l2}, {l1}); mode and owner from layer {l2}"
    )
    etc = traced(cli, "stacked:1", "/etc")  # the base's /etc and both layers' /etc
    assert etc["ServedBy"] == [l2, l1, base]


def test_through_a_symlinked_parent(cli, stacked):
    _, base, l1, l2 = stacked
    doc = traced(cli, "stacked:1", "/data/c")  # /data -> srv (relative, in L1)
    assert doc["ResolvedPath"] == "/srv/c" and doc["Symlinks"] == [{"Path": "/data", "Target": "srv", "Layer": l1}]
    assert doc["ServedBy"] == [l2]
    text = cli("trace", "stacked:1", "/data/c").out.splitlines()
    assert text[0] == f"/data is a symlink -> srv ({l1}): followed in the merged view"
    # `..` after a symlink climbs from the target, not lexically; the last component is not followed
    assert traced(cli, "stacked:1", "/data/../etc/config.yaml")["ServedBy"] == [l2]
    link = traced(cli, "stacked:1", "/data")
    assert link["ServedBy"] == [l1] and link["Verdict"].startswith("/data: a symlink -> srv")


def test_a_containers_changes_are_served_by_its_upper(cli, stacked):
    _, base, l1, l2 = stacked
    script = "echo v3 > /etc/config.yaml; echo data > /tmp/file.txt; rm /srv/c; ln -s /etc /cfg"
    assert cli("run", "--name", "t1", "stacked:1", "sh", "-c", script).code == 0
    doc = traced(cli, "t1", "/etc/config.yaml")
    assert [row["Layer"] for row in doc["Layers"]] == ["upper", "init", l2, l1, base]
    assert actions(doc) == {"upper": "serves", "init": "passes", l2: "shadowed", l1: "shadowed", base: "passes"}
    assert doc["Type"] == "container" and doc["Layers"][0]["CreatedBy"].startswith("container t1: sh -c")
    deleted = traced(cli, "t1", "/srv/c")
    assert (
        actions(deleted)["upper"] == "hides" and actions(deleted)[l2] == "shadowed" and deleted["DeletedBy"] == "upper"
    )
    assert traced(cli, "t1", "/cfg/config.yaml")["ServedBy"] == ["upper"]  # a symlink the container made
    tmp = traced(cli, "t1", "/tmp")
    assert tmp["ServedBy"] == ["upper", base]
    hosts = cli("trace", "t1", "/etc/hosts").out.splitlines()
    assert hosts[-2].startswith("/etc/hosts: a file (0B), served by init")
    assert hosts[-1].startswith("note: while the container runs, /etc/hosts is a bind mount")
    # by id prefix too; a container is tried before an image of the same name
    assert (
        cli("trace", cli("ps", "-a", "-q").out.split()[0][:6], "/tmp/file.txt")
        .out.splitlines()[-1]
        .startswith("/tmp/file.txt: a file (5B), served by upper")
    )
    assert cli("run", "--name", "busybox", "stacked:1", "touch", "/mine").code == 0
    assert traced(cli, "busybox", "/mine")["ServedBy"] == ["upper"]
    assert traced(cli, "busybox:latest", "/mine")["Type"] == "image"


def test_a_parent_that_is_a_file_and_a_path_no_layer_has(cli, stacked):
    _, base, l1, l2 = stacked
    under_file = traced(cli, "stacked:1", "/etc/config.yaml/x")
    assert not under_file["Exists"] and "/etc/config.yaml is a file, not a directory" in under_file["Verdict"]
    nowhere = traced(cli, "stacked:1", "/nope/deeper")
    assert set(actions(nowhere).values()) == {"passes"}
    assert nowhere["Verdict"] == "/nope/deeper does not exist in the merged view: no layer has it"


def test_a_path_with_more_names_than_the_recursion_limit(cli, stacked):
    below = "/d" * 1500  # each parent is looked up before its child, in a loop
    under_file = traced(cli, "stacked:1", "/etc/config.yaml" + below)
    assert not under_file["Exists"] and "/etc/config.yaml is a file, not a directory" in under_file["Verdict"]
    nowhere = traced(cli, "stacked:1", "/nope" + below)
    assert nowhere["Verdict"] == f"/nope{below} does not exist in the merged view: no layer has it"


def test_bad_input(cli, stacked):
    assert "No such image: nosuch:latest" in one_error_line(cli("trace", "nosuch", "/etc"))
    one_error_line(cli("trace", "stacked:1", ""))
    one_error_line(cli("trace", "stacked:1", "/etc", "--format", "yaml"))
    # a relative PATH starts at the root, as `docker cp` reads container paths
    assert traced(cli, "stacked:1", "etc/config.yaml")["Path"] == "/etc/config.yaml"
    assert cli("run", "--name", "loop", "stacked:1", "sh", "-c", "ln -s /b /a; ln -s /a /b").code == 0
    assert "Too many levels of symbolic links" in one_error_line(cli("trace", "loop", "/a/x"))
    assert traced(cli, "loop", "/a")["Verdict"].startswith("/a: a symlink -> /b, served by upper")


def _every_path(layer_dirs: list[str]) -> set[str]:
    found = set()
    for layer in layer_dirs:
        for top, dirs, files in os.walk(layer):
            for name in dirs + files:
                found.add("/" + os.path.relpath(os.path.join(top, name), layer))
    return found


def test_trace_agrees_with_a_real_overlay_mount(cli, store, stacked):
    """Every path any layer holds (plus some under symlinks and deleted dirs): the kernel's
    merged view and trace agree on existence, and the served bytes are the mount's bytes."""
    image = stacked[0]
    layer_a = make_tar(
        [
            d("usr"),
            f("usr/.wh.bin"),
            d("deep"),
            d("deep/er"),
            f("deep/er/f", "deep"),
            sym("up", "deep/er"),
            sym("abs", "/etc"),
            d("nd"),
            f("nd/old", "o"),
        ]
    )
    layer_b = make_tar([f(".wh.opt"), f("nd", "a file over the dir")])
    # plain (not opaque) dirs over the whiteout and the file: they end the union there
    layer_c = make_tar([d("opt"), f("opt/z", "z"), d("nd"), f("nd/new", "n")])
    top = make_image(store, "stacked:2", [layer_a, layer_b, layer_c], base=image)
    layer_dirs = [store.layers.diff_dir(x) for x in reversed(top.diff_ids)]
    paths = sorted(_every_path(layer_dirs) | {"/up/f", "/abs/config.yaml", "/abs/passwd", "/up/../srv/c"})

    def merged_view():
        from minirun import linux

        with tempfile.TemporaryDirectory() as scratch:
            linux.mount("overlay", scratch, "overlay", linux.MS_RDONLY, "lowerdir=" + ":".join(layer_dirs))
            try:
                view = {}
                for path in paths:
                    # parents' symlinks resolved inside the mount, as the container sees them
                    real = _resolve_in(scratch, path)
                    if real is None or not os.path.lexists(real):
                        view[path] = None
                    elif os.path.isfile(real) and not os.path.islink(real):
                        with open(real, "rb") as fh:
                            view[path] = ("file", fh.read())
                    else:
                        view[path] = ("other", os.path.islink(real))
                return view
            finally:
                linux.umount2(scratch, linux.MNT_DETACH)

    view = in_mount_ns(merged_view)
    from minirun.image.trace import image_layers, trace

    layers = image_layers(store, top)
    by_label = {layer.label: layer.dir for layer in layers}
    for path in paths:
        result = trace(layers, path)
        assert result.exists == (view[path] is not None), (path, result.verdict)
        if view[path] and view[path][0] == "file":
            assert len(result.served_by) == 1, path
            with open(os.path.join(by_label[result.served_by[0]], result.resolved.lstrip("/")), "rb") as fh:
                assert fh.read() == view[path][1], path
    a, b, c = (short(x) for x in top.diff_ids[-3:])
    assert trace(layers, "/opt/x").verdict.endswith(f"hidden by the whiteout at /opt in layer {b} (layer 1)")
    assert trace(layers, "/nd/old").verdict.endswith(f"hidden by the file at /nd in layer {b} (layer 1)")
    assert trace(layers, "/usr/bin/cat").verdict.endswith(f"deleted with /usr/bin by layer {a} (layer 0)")
    assert trace(layers, "/opt/z").exists and trace(layers, "/nd/new").exists


def _resolve_in(root: str, path: str) -> str | None:
    """PATH inside the mounted view with its parents' symlinks resolved inside `root`."""
    parts = [p for p in path.split("/") if p]
    done: list[str] = []
    for _ in range(100):  # a symlink loop: missing, as ELOOP is
        if not parts:
            return os.path.join(root, *done) if done else root
        name = parts.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root, *done, name)
        if parts and os.path.islink(here):
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        done.append(name)
    return None


# -- system df ----------------------------------------------------------------------------


def df_rows(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines()[1:]:
        cells = [c for c in line.split("   ") if c.strip()]
        rows[cells[0].strip()] = [c.strip() for c in cells[1:]]
    return rows


def meta_sizes(root) -> dict[str, int]:
    sizes = {}
    for name in os.listdir(root / "layers"):
        meta = root / "layers" / name / "meta.json"
        if meta.exists():
            sizes[name] = json.loads(meta.read_text())["size"]
    return sizes


def section(out: str, title: str) -> list[str]:
    lines = out.splitlines()
    start = lines.index(title) + 2
    end = start
    while end < len(lines) and lines[end]:
        end += 1
    return lines[start:end]


def test_df_counts_a_shared_base_layer_once(cli, store, busybox, isolated_store):
    one = make_image(store, "one:1", [make_tar([d("one"), f("one/data", b"1" * 3000)])], base=busybox)
    make_image(store, "two:1", [make_tar([d("two"), f("two/data", b"2" * 7000)])], base=busybox)
    sizes = meta_sizes(isolated_store)
    base_size = sizes[busybox.diff_ids[0].split(":")[1]]
    out = cli("system", "df")
    assert out.code == 0, out
    header, *_ = out.out.splitlines()
    assert header.split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    rows = df_rows(out.out)
    assert rows["Images"][:3] == ["3", "0", human_size(sum(sizes.values()), 4)]
    assert sum(sizes.values()) == base_size + 3000 + 7000  # the base once, not three times
    assert rows["Images"][3] == f"{human_size(sum(sizes.values()), 4)} (100%)"
    assert rows["Containers"] == ["0", "0", "0B", "0B"]
    assert rows["Local Volumes"] == ["0", "0", "0B", "0B"] and rows["Build Cache"] == ["0", "0", "0B", "0B"]

    verbose = cli("system", "df", "-v").out
    images = section(verbose, "Images space usage:")
    assert images[0].split() == [
        "REPOSITORY",
        "TAG",
        "IMAGE",
        "ID",
        "CREATED",
        "SIZE",
        "SHARED",
        "SIZE",
        "UNIQUE",
        "SIZE",
        "CONTAINERS",
    ]
    by_repo = {line.split()[0]: [c.strip() for c in line.split("   ") if c.strip()] for line in images[1:]}
    assert by_repo["one"][1] == "1" and by_repo["one"][2] == one.short_id
    assert by_repo["one"][4:8] == [human_size(base_size + 3000), human_size(base_size, 4), "3kB", "0"]
    assert by_repo["two"][5:7] == [human_size(base_size, 4), "7kB"]
    assert by_repo["busybox"][5:7] == [human_size(base_size, 4), "0B"]
    layers = section(verbose, "Layers space usage:")
    assert layers[0].split() == ["LAYER", "SIZE", "USED", "BY"]
    used_by = {line.split()[0]: line.split()[-1] for line in layers[1:]}
    assert used_by == {
        short(busybox.diff_ids[0]): "3",
        short(one.diff_ids[1]): "1",
        short(store.images.lookup("two:1").diff_ids[1]): "1",
    }
    assert len(layers) - 1 == len(sizes)  # each stored layer listed once
    for title in ("Containers space usage:", "Local Volumes space usage:"):
        assert title in verbose
    assert "Build cache usage: 0B" in verbose


def test_containers_take_their_own_bytes_not_the_image(cli, store, busybox, isolated_store):
    make_image(store, "app:1", [make_tar([d("app"), f("app/blob", b"a" * 50_000)])], base=busybox)
    make_image(store, "unused:1", [make_tar([d("u"), f("u/blob", b"u" * 4000)])], base=busybox)
    for name in ("c1", "c2"):
        assert cli("run", "--name", name, "app:1", "sh", "-c", "echo data > /tmp/file.txt").code == 0
    running = cli("run", "-d", "--name", "c3", "app:1", "sh", "-c", "echo data > /tmp/file.txt; sleep 1000")
    assert running.code == 0, running
    try:
        upper = isolated_store / "containers" / running.out.strip() / "upper" / "tmp" / "file.txt"
        deadline = time.monotonic() + 15
        while not (upper.exists() and upper.stat().st_size == 5) and time.monotonic() < deadline:
            time.sleep(0.05)
        uppers = [c.upper for c in Containers(store).all()]
        own = sum(_du(u) for u in uppers)
        assert own == 15  # three 5-byte files
        rows = df_rows(cli("system", "df").out)
        assert rows["Containers"] == ["3", "1", "15B", "10B (66%)"]
        image_size = sum(meta_sizes(isolated_store).values())
        assert rows["Images"][:2] == ["3", "1"]
        # only the unused image's own layer is reclaimable: app's layers (and the shared base) are in use
        assert rows["Images"][3] == f"4kB ({4000 * 100 // image_size}%)"
        verbose = cli("system", "df", "-v").out
        containers = section(verbose, "Containers space usage:")
        assert containers[0].split()[:5] == ["CONTAINER", "ID", "IMAGE", "COMMAND", "LOCAL"]
        assert len(containers) == 4
        for line in containers[1:]:
            cells = [c.strip() for c in line.split("   ") if c.strip()]
            assert cells[1] == "app:1" and cells[3] == "0" and cells[4] == "5B"
        assert {line.split()[-1] for line in containers[1:]} == {"c1", "c2", "c3"}
        assert "Up " in next(line for line in containers if line.endswith("c3"))
    finally:
        cli("rm", "-f", "c3")


def _du(path: str) -> int:
    total = 0
    for top, dirs, files in os.walk(path):
        for name in files + [sub for sub in dirs if os.path.islink(os.path.join(top, sub))]:
            total += os.lstat(os.path.join(top, name)).st_size
    return total
