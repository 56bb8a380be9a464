"""Patch series: parsing, hashing, and applying into a copy that never touches the pristine tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.stages import out
from tinyuki.errors import TinyukiError
from tinyuki.formats import series
from tinyuki.tasks import patch
from tinyuki.util.fs import atomic_write_json, read_json

GOOD = b"""--- a/init/main.c
+++ b/init/main.c
@@ -1,4 +1,4 @@
 int main(void)
 {
-\treturn 0;
+\treturn 42;
 }
"""

BAD = b"""--- a/README
+++ b/README
@@ -1 +1 @@
-Linux kernel (something else)
+Linux kernel (patched)
"""


def make_tree(root: Path) -> Path:
    (root / "init").mkdir(parents=True)
    (root / "init" / "main.c").write_bytes(b"int main(void)\n{\n\treturn 0;\n}\n")
    (root / "README").write_bytes(b"Linux kernel (test tree)\n")
    (root / "Makefile").write_bytes(b"VERSION = 9\nPATCHLEVEL = 9\nSUBLEVEL = 0\n")
    return root


def make_series(d: Path, patches: dict[str, bytes], extra_lines: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, body in patches.items():
        (d / name).write_bytes(body)
    f = d / "series"
    f.write_text("# comment line\n\n" + "".join(f"{n}\n" for n in patches) + extra_lines)
    return f


def test_read_series_skips_comments_and_keeps_order(tmp_path):
    f = make_series(tmp_path, {"b.patch": GOOD, "a.patch": BAD}, "  # trailing comment\n")
    s = series.read_series(f)
    assert s.names == ["b.patch", "a.patch"]


def test_missing_patch_names_the_line(tmp_path):
    f = make_series(tmp_path, {"a.patch": GOOD}, "gone.patch\n")
    with pytest.raises(TinyukiError) as e:
        series.read_series(f)
    assert "series:4: patch gone.patch not found" in e.value.message


def test_hash_depends_on_content_and_order(tmp_path):
    one = series.read_series(make_series(tmp_path / "1", {"a.patch": GOOD, "b.patch": BAD}))
    two = series.read_series(make_series(tmp_path / "2", {"b.patch": BAD, "a.patch": GOOD}))
    three = series.read_series(make_series(tmp_path / "3", {"a.patch": GOOD, "b.patch": BAD + b" \n"}))
    same = series.read_series(make_series(tmp_path / "4", {"a.patch": GOOD, "b.patch": BAD}))
    assert len({series.patches_sha256(x) for x in (one, two, three)}) == 3
    assert series.patches_sha256(one) == series.patches_sha256(same)
    assert series.patches_sha256(series.read_series(make_series(tmp_path / "5", {}))) is None


def test_touched_files():
    assert series.touched_files(GOOD + BAD) == {"init/main.c", "README"}
    assert series.touched_files(b"--- /dev/null\n+++ b/new/file.c\n") == {"new/file.c"}


def test_apply_series_leaves_pristine_tree_alone(tmp_path):
    pristine = make_tree(tmp_path / "pristine")
    s = series.read_series(make_series(tmp_path / "p", {"a.patch": GOOD}))
    dest = tmp_path / "patched"
    patch.apply_series(pristine, dest, s, tmp_path / "patch.log")
    assert b"return 42" in (dest / "init" / "main.c").read_bytes()
    assert b"return 0" in (pristine / "init" / "main.c").read_bytes()
    assert os.stat(dest / "README").st_ino == os.stat(pristine / "README").st_ino  # untouched: shared
    assert os.stat(dest / "init/main.c").st_ino != os.stat(pristine / "init/main.c").st_ino


def test_failing_patch_names_itself_and_shows_the_hunk(tmp_path):
    pristine = make_tree(tmp_path / "pristine")
    s = series.read_series(make_series(tmp_path / "p", {"a.patch": GOOD, "b.patch": BAD}))
    with pytest.raises(TinyukiError) as e:
        patch.apply_series(pristine, tmp_path / "patched", s, tmp_path / "patch.log")
    msg = e.value.message
    assert "patch b.patch" in msg and "does not apply to Linux 9.9.0" in msg  # the version the tree declares
    assert "refresh the patch against Linux 9.9.0" in e.value.hint
    assert "Hunk #1 FAILED" in msg and "+Linux kernel (patched)" in msg
    assert (pristine / "README").read_bytes() == b"Linux kernel (test tree)\n"


def test_already_applied_patch_fails(tmp_path):
    pristine = make_tree(tmp_path / "pristine")
    s = series.read_series(make_series(tmp_path / "p", {"a.patch": GOOD, "again.patch": GOOD}))
    with pytest.raises(TinyukiError) as e:
        patch.apply_series(pristine, tmp_path / "patched", s, tmp_path / "patch.log")
    assert "again.patch" in e.value.message


def test_stage_leaves_no_half_patched_tree(tmp_path):
    from tests.helpers.profiles import context

    f = make_series(tmp_path / "patches", {"a.patch": GOOD, "b.patch": BAD})
    ctx = context(tmp_path, {"urls": ["/nonexistent.tar.xz"], "sha256": "0" * 64}, {"patches": str(f)})
    pristine = make_tree(ctx.paths.trees / ("src-" + "0" * 64))
    atomic_write_json(out(ctx, "extracted.json"), {"tree": str(pristine), "source_sha256": "0" * 64})
    with pytest.raises(TinyukiError):
        patch.patch(ctx)
    assert sorted(p.name for p in ctx.paths.trees.iterdir()) == [pristine.name]
    assert not out(ctx, "tree.json").exists()
    (f.parent / "b.patch").write_bytes(BAD.replace(b"something else", b"test tree"))
    patch.patch(ctx)
    rec = read_json(out(ctx, "tree.json"))
    assert rec["patches"] == ["a.patch", "b.patch"] and rec["source_sha256"] == "0" * 64
    assert Path(rec["tree"]).name == f"patched-{'0' * 64}-{rec['patches_sha256']}"
    assert (Path(rec["tree"]) / "README").read_bytes() == b"Linux kernel (patched)\n"
