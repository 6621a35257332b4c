"""`diff` reads what the image shows in a dir from the layers that show the dir itself, as
overlay does: a layer's own symlink on the way is never followed (it may point anywhere on the
host), and a dir made opaque in an upper layer hides what lower layers hold below it."""

from __future__ import annotations

import os

from minirun.layer.changes import changes
from minirun.layer.whiteouts import make_opaque


def test_a_lower_layers_symlink_is_never_followed(tmp_path):
    top, bottom, upper, host = (tmp_path / n for n in ("top", "bottom", "upper", "host"))
    (host / "x").mkdir(parents=True)
    (host / "x" / "host-secret-name").write_text("x")
    (top / "a" / "x").mkdir(parents=True)  # the image shows a/x from the top layer alone
    bottom.mkdir()
    os.symlink(host, bottom / "a")  # hidden by the top layer's dir a
    (upper / "a" / "x").mkdir(parents=True)
    make_opaque(str(upper / "a" / "x"))  # the container removed a/x and made it again
    (upper / "a" / "x" / "mine").write_text("x")
    found = [str(c) for c in changes(str(upper), [str(top), str(bottom)])]
    assert found == ["C /a", "C /a/x", "A /a/x/mine"]


def test_an_opaque_dir_of_a_layer_hides_the_layers_below_it(tmp_path):
    top, bottom, upper = (tmp_path / n for n in ("top", "bottom", "upper"))
    (top / "a" / "x").mkdir(parents=True)
    make_opaque(str(top / "a"))  # the top layer removed a and made it again, with x
    (bottom / "a" / "x").mkdir(parents=True)
    (bottom / "a" / "x" / "old").write_text("x")
    (upper / "a" / "x").mkdir(parents=True)
    (upper / "a" / "x" / "old").write_text("new")
    found = [str(c) for c in changes(str(upper), [str(top), str(bottom)])]
    assert found == ["C /a", "C /a/x", "A /a/x/old"]
