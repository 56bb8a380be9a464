"""What a crashed run leaves behind is cleaned, and never what a running one still uses.

Temporary trees under cache/trees/ are held by a lock while a run fills them;
a sweep removes only those nobody holds (or, without a lock, old enough).
A stale `.kbuild.old-<pid>` from a run that crashed with the same pid never
makes a later replace fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import tarballs
from tests.helpers.profiles import context
from tinyuki.tasks import extract as extract_stage
from tinyuki.tasks import fetch as fetch_stage
from tinyuki.tasks import verify as verify_stage
from tinyuki.util import fs


def old(path: Path, seconds: float = 2 * getattr(fs, "LEFTOVER_GRACE", 3600)) -> Path:
    t = time.time() - seconds
    os.utime(path, (t, t), follow_symlinks=False)
    return path


def test_a_stale_old_dir_with_our_pid_does_not_break_replace_dir(tmp_path):
    final = tmp_path / "kbuild"
    final.mkdir()
    (final / "a").write_text("old")
    stale = tmp_path / f".kbuild.old-{os.getpid()}"
    stale.mkdir()
    (stale / "left").write_text("from a crashed run")
    new = tmp_path / "new"
    new.mkdir()
    (new / "b").write_text("new")
    fs.replace_dir(new, final)
    assert (final / "b").read_text() == "new" and not (final / "a").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kbuild"]


def test_a_held_scratch_dir_survives_a_sweep_and_a_released_one_does_not(tmp_path):
    with fs.scratch_dir(tmp_path, ".tmp-src-") as held:
        (held / "tree").mkdir()
        old(held)
        assert fs.sweep(tmp_path, ".tmp-*") == []
        assert held.is_dir()
    # a crashed run: its dir stays, its lock is gone with its process
    root = str(Path(__file__).resolve().parents[2])
    code = (f"import sys, os; sys.path.insert(0, {root!r}); from pathlib import Path; from tinyuki.util import fs;"
            f"cm = fs.scratch_dir(Path({str(tmp_path)!r}), '.tmp-src-'); d = cm.__enter__(); (d / 'tree').mkdir();"
            "print(d, flush=True); os._exit(9)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    crashed = Path(proc.stdout.strip())
    assert crashed.is_dir()
    assert fs.sweep(tmp_path, ".tmp-*") == [crashed]
    assert not crashed.exists()


def test_a_young_leftover_without_a_lock_is_kept_an_old_one_removed(tmp_path):
    young = tmp_path / ".tmp-src-young"
    young.mkdir()
    aged = tmp_path / ".tmp-src-aged"
    aged.mkdir()
    ro = aged / "readonly"
    ro.mkdir()
    (ro / "f").write_text("x")
    ro.chmod(0o500)  # kernel trees carry read-only directories
    old(aged)
    assert fs.sweep(tmp_path, ".tmp-*") == [aged]
    assert young.is_dir() and not aged.exists()


def test_leftover_files_are_swept_by_age(tmp_path):
    a = tmp_path / "ab"
    a.mkdir()
    young = a / ".abcd.x1.tmp"
    young.write_text("x")
    aged = a / ".abcd.x2.tmp"
    aged.write_text("x")
    old(aged)
    assert fs.sweep(tmp_path, "*/.*.tmp") == [aged]
    assert young.exists()


def test_extract_sweeps_the_leftovers_of_a_crashed_extraction(tmp_path):
    tar = tarballs.write(tmp_path / "src" / "linux-9.9.tar.xz", tarballs.tar_bytes())
    import hashlib

    sha = hashlib.sha256(tar.read_bytes()).hexdigest()
    ctx = context(tmp_path, {"urls": [str(tar)], "sha256": sha})
    ctx.paths.trees.mkdir(parents=True)
    crashed = ctx.paths.trees / ".tmp-src-0123456789abcdef-dead"
    crashed.mkdir()
    old(crashed)
    store_tmp = ctx.paths.store / sha[:2] / f".{sha}.abcdef.tmp"
    store_tmp.parent.mkdir(parents=True)
    store_tmp.write_bytes(b"half a copy")
    old(store_tmp)
    fetch_stage.fetch(ctx)
    verify_stage.verify(ctx)
    assert not store_tmp.exists()
    extract_stage.extract(ctx)
    assert sorted(p.name for p in ctx.paths.trees.iterdir()) == [f"src-{sha}"]


def tree(trees: Path, name: str, size: int, age: float) -> Path:
    d = trees / name
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_bytes(b"x" * size)
    (d / "sub").chmod(0o555)  # read-only directories, as kernel tarballs have
    old(d, age)
    return d


def test_cache_prune_covers_the_trees(tmp_path):
    from tinyuki.cache import trees as treecache

    trees = tmp_path / "trees"
    oldest = tree(trees, f"src-{'a' * 64}", 300_000, 3 * 86400)
    middle = tree(trees, f"patched-{'a' * 64}-{'b' * 64}", 300_000, 2 * 86400)
    newest = tree(trees, f"src-{'c' * 64}", 300_000, 60)
    crashed = trees / ".tmp-src-0123-dead"
    crashed.mkdir()
    old(crashed)
    result = treecache.prune(trees, keep_bytes=700_000)
    assert newest.is_dir() and middle.is_dir() and not oldest.exists() and not crashed.exists()
    assert result["removed_trees"] == 1 and result["removed_leftovers"] == 1 and result["freed_bytes"] >= 300_000
    assert treecache.prune(trees, keep_bytes=0)["removed_trees"] == 2
    assert sorted(p.name for p in trees.iterdir()) == []


def test_a_tree_in_use_is_young_again(tmp_path):
    tar = tarballs.write(tmp_path / "src" / "linux-9.9.tar.xz", tarballs.tar_bytes())
    import hashlib

    sha = hashlib.sha256(tar.read_bytes()).hexdigest()
    ctx = context(tmp_path, {"urls": [str(tar)], "sha256": sha})
    fetch_stage.fetch(ctx)
    verify_stage.verify(ctx)
    extract_stage.extract(ctx)
    t = extract_stage.tree_for(ctx, sha)
    old(t, 5 * 86400)
    extract_stage.extract(ctx)  # another build dir (or this one) uses the tree again
    assert time.time() - t.stat().st_mtime < 60


def test_the_cache_prune_command_prunes_trees_and_store_leftovers(tmp_path, capsys):
    from tinyuki.cli import cache as cachecmd

    ctx = context(tmp_path, {"urls": ["/nonexistent.tar.xz"], "sha256": "0" * 64})
    gone = tree(ctx.paths.trees, f"src-{'a' * 64}", 10_000, 86400)
    stale = ctx.paths.store / "ab" / ".abab.x.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    old(stale)
    task = cachecmd.prune_task(ctx)
    assert task["actions"][0](keep=0.0) is True
    assert not gone.exists() and not stale.exists()
    assert "removed 1 trees" in capsys.readouterr().out


def test_a_restore_sweeps_what_a_crashed_restore_left(tmp_path):
    import io
    import tarfile

    from tinyuki.cache import store as cachestore

    store = cachestore.Store(tmp_path / "artifacts")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    sha, size = store.put_bytes(buf.getvalue())
    key = "ef" * 32
    store.save_entry({"schema": cachestore.SCHEMA, "task": "kernel", "key": key, "created": time.time(),
                      "built_in": 1.0, "files": {},
                      "trees": {"kbuild": {"sha256": sha, "size": size, "files": 1, "relocated": 0}}})
    build = tmp_path / "build"
    build.mkdir()
    crashed = build / ".kbuild.restore.abc123"
    (crashed / "sub").mkdir(parents=True)
    old(crashed)
    young = build / ".kbuild.restore.def456"  # maybe another run's, right now: kept
    young.mkdir()
    store.restore(store.load(key), build, {"BUILD": build, "KBUILD": build / "kbuild"})
    assert (build / "kbuild" / "f").read_bytes() == b"x"
    assert not crashed.exists() and young.exists()
