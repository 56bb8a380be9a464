"""Hostile patches: a header path that leaves the tree is refused before any file is copied or replaced.

break_links gives every file a patch names its own inode before GNU patch
runs; a name like `a/../../x`, an absolute one, or one through a symlink an
earlier patch made must never reach it, or a file outside the tree would be
copied and replaced even though patch itself then refuses the patch.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tinyuki.errors import TinyukiError
from tinyuki.formats import series
from tinyuki.tasks import patch


def make_tree(root: Path) -> Path:
    (root / "init").mkdir(parents=True)
    (root / "init" / "main.c").write_bytes(b"int main(void)\n{\n\treturn 0;\n}\n")
    (root / "README").write_bytes(b"Linux kernel (test tree)\n")
    return root


def make_series(d: Path, patches: dict[str, bytes]) -> series.Series:
    d.mkdir(parents=True, exist_ok=True)
    for name, body in patches.items():
        (d / name).write_bytes(body)
    (d / "series").write_text("".join(f"{n}\n" for n in patches))
    return series.read_series(d / "series")


def modify(old: str, new: str, body_old: str = "hello", body_new: str = "owned") -> bytes:
    return f"--- {old}\n+++ {new}\n@@ -1 +1 @@\n-{body_old}\n+{body_new}\n".encode()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "file").write_text("hello\n")
    return d


def refused(tmp_path: Path, patches: dict[str, bytes], outside: Path) -> str:
    pristine = make_tree(tmp_path / "pristine")
    before = {p.name: os.stat(p).st_ino for p in outside.iterdir()}
    s = make_series(tmp_path / "p", patches)
    (tmp_path / "box").mkdir()
    with pytest.raises(TinyukiError) as e:
        patch.apply_series(pristine, tmp_path / "box" / "patched", s, tmp_path / "patch.log")
    after = {p.name: os.stat(p).st_ino for p in outside.iterdir()}
    assert after == before, "a file outside the tree was copied or replaced"
    assert (outside / "file").read_text() == "hello\n"
    assert "escapes the tree" in e.value.message
    return e.value.message


def test_dotdot_in_a_header_is_refused_before_anything_is_copied(tmp_path, outside):
    msg = refused(tmp_path, {"evil.patch": modify("a/../outside/file", "b/../outside/file")}, outside)
    assert "evil.patch" in msg and "../outside/file" in msg
    assert not (tmp_path / "box" / "patched").exists()  # checked before the tree was even copied


def test_an_absolute_header_is_refused(tmp_path, outside):
    target = str(outside / "file")
    msg = refused(tmp_path, {"abs.patch": modify(target, target)}, outside)
    assert "absolute" in msg


def test_an_absolute_path_after_stripping_is_refused(tmp_path, outside):
    target = str(outside / "file")
    refused(tmp_path, {"abs.patch": modify(f"a/{target}", f"b/{target}")}, outside)


def test_a_git_rename_out_of_the_tree_is_refused(tmp_path, outside):
    body = (b"diff --git a/README b/../outside/file\nsimilarity index 100%\n"
            b"rename from README\nrename to ../outside/file\n")
    refused(tmp_path, {"rename.patch": body}, outside)


def test_a_path_through_a_symlink_the_series_made_is_refused(tmp_path, outside):
    link = (f"diff --git a/evil b/evil\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n+++ b/evil\n"
            f"@@ -0,0 +1 @@\n+{outside}\n\\ No newline at end of file\n").encode()
    msg = refused(tmp_path, {"1-link.patch": link, "2-through.patch": modify("a/evil/file", "b/evil/file")},
                  outside)
    assert "2-through.patch" in msg and "symlink" in msg


def test_a_removed_line_that_looks_like_a_header_is_not_a_path(tmp_path):
    """`-- x` removed from a file reads `--- x` inside a hunk: it names no file and is no escape."""
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    (pristine / "q.sql").write_text("select 1;\n-- ../../etc/passwd\nselect 2;\n")
    body = (b"--- a/q.sql\n+++ b/q.sql\n@@ -1,3 +1,2 @@\n select 1;\n--- ../../etc/passwd\n select 2;\n")
    s = make_series(tmp_path / "p", {"ok.patch": body})
    patch.apply_series(pristine, tmp_path / "patched", s, tmp_path / "patch.log")
    assert (tmp_path / "patched" / "q.sql").read_text() == "select 1;\nselect 2;\n"
    assert series.touched_files(body) == {"q.sql"}


def test_header_paths_lists_every_name_a_patch_gives():
    body = (b"diff --git a/x/old.c b/x/new.c\nrename from x/old.c\nrename to x/new.c\n"
            b"Index: y/z.c\n--- a/y/z.c\n+++ b/y/z.c\n@@ -1 +1 @@\n-a\n+b\n")
    assert set(series.header_paths(body)) >= {"a/x/old.c", "b/x/new.c", "x/old.c", "x/new.c", "a/y/z.c", "b/y/z.c"}
