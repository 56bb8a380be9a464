"""The artifact cache's store, restore, verification, pruning, and the task keys."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from tests.helpers.profiles import context
from tests.helpers.stages import out
from tinyuki.cache import keys as taskkey
from tinyuki.cache import store as artifacts
from tinyuki.cache.store import CorruptEntry, Store
from tinyuki.records import Tree
from tinyuki.tasks import PIPELINE
from tinyuki.toolchain import tools

KEY = "ab" * 32


def make_outputs(build: Path) -> None:
    (build / "kbuild" / "sub").mkdir(parents=True)
    (build / "stamp.json").write_text(json.dumps({"tree": "/some/tree/src-1"}))
    (build / "image").write_bytes(b"\x7fELF\0binary" * 100)
    os.chmod(build / "image", 0o755)
    kb = build / "kbuild"
    (kb / "sub" / ".foo.o.cmd").write_text(f"savedcmd_foo.o := gcc -I/some/tree/src-1/include -c -o {kb}/sub/foo.o\n")
    (kb / "sub" / "foo.o").write_bytes(b"\0object")
    os.symlink("/some/tree/src-1", kb / "source")
    os.utime(kb / "sub" / "foo.o", (1000, 1000))
    os.utime(kb / "sub" / ".foo.o.cmd", (900, 900))


def store_entry(store: Store, build: Path, key: str = KEY, task: str = "kernel") -> dict:
    locs = {"TREE": "/some/tree/src-1", "KBUILD": build / "kbuild", "BUILD": build}
    entry = {"schema": artifacts.SCHEMA, "task": task, "key": key, "created": time.time(), "built_in": 1.0,
             "files": {}, "trees": {}}
    for rel in ("stamp.json", "image"):
        data = (build / rel).read_bytes()
        moved = artifacts.relocate_out(data, locs)
        sha, size = store.put_bytes(moved if moved is not None else data)
        entry["files"][rel] = {"sha256": sha, "size": size, "mode": (build / rel).stat().st_mode & 0o7777,
                               "relocated": moved is not None}
    entry["trees"]["kbuild"] = store.put_tree(build / "kbuild", locs)
    store.save_entry(entry)
    return entry


@pytest.fixture
def built(tmp_path: Path) -> tuple[Store, Path, dict]:
    build = tmp_path / "a"
    make_outputs(build)
    store = Store(tmp_path / "cache" / "artifacts")
    return store, build, store_entry(store, build)


def test_roundtrip_relocates_paths_and_keeps_mtime_order(built, tmp_path):
    store, _a, _ = built
    b = tmp_path / "elsewhere" / "b"
    b.mkdir(parents=True)
    entry = store.load(KEY)
    store.restore(entry, b, {"TREE": "/new/tree/src-1", "KBUILD": b / "kbuild", "BUILD": b})
    assert json.loads((b / "stamp.json").read_text()) == {"tree": "/new/tree/src-1"}
    assert (b / "image").read_bytes() == b"\x7fELF\0binary" * 100
    assert (b / "image").stat().st_mode & 0o777 == 0o755
    cmd = (b / "kbuild" / "sub" / ".foo.o.cmd").read_text()
    assert cmd == f"savedcmd_foo.o := gcc -I/new/tree/src-1/include -c -o {b}/kbuild/sub/foo.o\n"
    assert (b / "kbuild" / "sub" / "foo.o").read_bytes() == b"\0object"
    assert os.readlink(b / "kbuild" / "source") == "/new/tree/src-1"
    obj, cmdf = (b / "kbuild" / "sub" / "foo.o").stat(), (b / "kbuild" / "sub" / ".foo.o.cmd").stat()
    assert obj.st_mtime - cmdf.st_mtime == pytest.approx(100)  # order kept...
    assert obj.st_mtime > time.time() - 60  # ...but moved to now: newer than a freshly unpacked source tree
    # restoring touched the entry: it is the most recently used one
    assert time.time() - store.entry_path(KEY).stat().st_mtime < 60


def test_relocation_leaves_longer_paths_and_binaries_alone() -> None:
    locs = {"BUILD": "/b/build"}
    assert artifacts.relocate_out(b"/b/build /b/build2 /b/build/x /b/build-old", locs) == \
        b"@@TINYUKI_BUILD@@ /b/build2 @@TINYUKI_BUILD@@/x /b/build-old"
    assert artifacts.relocate_out(b"\0/b/build", locs) is None
    assert artifacts.relocate_out(b"nothing here", locs) is None


def test_corrupted_blob_is_detected_and_nothing_is_written(built, tmp_path):
    store, _a, entry = built
    blob = store.blob(entry["files"]["image"]["sha256"])
    os.chmod(blob, 0o644)
    blob.write_bytes(b"\x7fELF\0binarY" * 100)  # same size, other bytes
    b = tmp_path / "b"
    b.mkdir()
    with pytest.raises(CorruptEntry, match="does not match its sha256"):
        store.restore(store.load(KEY), b, {"BUILD": b})
    assert sorted(p.name for p in b.iterdir()) == []  # staged files were removed, nothing replaced
    store.remove_blob_if_bad(entry)
    assert not blob.exists()


def test_corrupted_tree_blob_is_detected(built, tmp_path):
    store, _a, entry = built
    blob = store.blob(entry["trees"]["kbuild"]["sha256"])
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    (tmp_path / "b").mkdir()
    with pytest.raises(CorruptEntry):
        store.restore(store.load(KEY), tmp_path / "b", {})
    assert not (tmp_path / "b" / "kbuild").exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong-key", "bad-sha", "escape"])
def test_damaged_entry_json_is_refused(built, damage):
    store, _a, entry = built
    path = store.entry_path(KEY)
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        path.write_text("[1, 2]")
    elif damage == "wrong-key":
        path.write_text(json.dumps({**entry, "key": "cd" * 32}))
    elif damage == "bad-sha":
        path.write_text(json.dumps({**entry, "files": {"image": {**entry["files"]["image"], "sha256": "x"}}}))
    else:
        path.write_text(json.dumps({**entry, "files": {"../../etc/x": entry["files"]["image"]}}))
    with pytest.raises(CorruptEntry):
        store.load(KEY)
    assert store.load("ef" * 32) is None  # absent is not damaged


def _writer(root: str, build: str, n: int) -> None:
    store = Store(Path(root))
    for _ in range(n):
        store_entry(store, Path(build))


def test_concurrent_writers_of_one_key_both_complete(built, tmp_path):
    store, a, first = built
    procs = [multiprocessing.get_context("fork").Process(target=_writer, args=(str(store.root), str(a), 5))
             for _ in range(2)]
    threads = [threading.Thread(target=_writer, args=(str(store.root), str(a), 5)) for _ in range(2)]
    seen: list[dict | None] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(store.load(KEY))  # never a half-written entry: CorruptEntry would fail the test

    r = threading.Thread(target=reader)
    r.start()
    for w in [*procs, *threads]:
        w.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    for t in threads:
        t.join()
    stop.set()
    r.join()
    assert seen and all(e is not None and e["files"] == first["files"] for e in seen)
    assert not list(store.tmp.iterdir())  # no temp file left behind
    b = tmp_path / "b"
    b.mkdir()
    store.restore(store.load(KEY), b, {"TREE": "/t", "KBUILD": b / "kbuild", "BUILD": b})
    assert (b / "image").read_bytes() == (a / "image").read_bytes()


def test_prune_keeps_most_recently_used_within_the_limit(tmp_path):
    store = Store(tmp_path / "artifacts")
    keys = []
    for i in range(4):
        sha, size = store.put_bytes(bytes([i]) * 1000)
        key = f"{i:02x}" * 32
        store.save_entry({"schema": artifacts.SCHEMA, "task": f"t{i}", "key": key, "files": {
            "out": {"sha256": sha, "size": size, "mode": 0o644}}, "trees": {}})
        os.utime(store.entry_path(key), (1000 + i, 1000 + i))  # used in order 0, 1, 2, 3
        keys.append(key)
    store.touch(keys[0])  # entry 0 was just restored: now the newest
    old = time.time() - 2 * artifacts.PRUNE_GRACE
    for blob in store.blobs.glob("*/*"):
        os.utime(blob, (old, old))
    result = store.prune(2500)
    assert result["removed_entries"] == 2 and result["removed_blobs"] == 2 and result["freed_bytes"] == 2000
    assert [k for k, _e, _s in store.list()] == [keys[0], keys[3]]
    assert store.disk_usage() == 2000
    # a young unreferenced blob (an entry being written) survives
    store.put_bytes(b"in flight")
    store.prune(0)
    assert store.disk_usage() == len(b"in flight") and store.list() == []


# ---------------------------------------------------------------- keys


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in list(os.environ):
        if name.startswith(("KBUILD_", "CCACHE_")) or name in taskkey.ENV_NAMES:
            monkeypatch.delenv(name)
    c = context(tmp_path, {"urls": ["/nonexistent.tar.xz"], "sha256": "0" * 64},
                {"fragments": ["base"], "source_date_epoch": 1700000000})
    c.paths.build.mkdir(parents=True)
    tree_json(c, tmp_path / "trees" / f"src-{'1' * 64}")
    out(c, "kernel.config").write_text("CONFIG_64BIT=y\n")
    taskkey.record(c, "configure", "c" * 64, {})
    return c


def tree_json(ctx, tree: Path) -> None:
    Tree(tree=str(tree), source_sha256="1" * 64, patches_sha256=None, patches=[]).save(ctx.paths.build)


def kernel_key(ctx) -> str:
    return taskkey.compute(ctx, PIPELINE["kernel"], PIPELINE)[0]


def test_key_is_stable_and_follows_every_input(ctx, monkeypatch, tmp_path):
    base = kernel_key(ctx)
    assert kernel_key(ctx) == base
    os.utime(out(ctx, "kernel.config"), (1, 1))  # touched, same bytes
    assert kernel_key(ctx) == base

    monkeypatch.setenv("CCACHE_DIR", "/elsewhere")  # speed-only settings
    monkeypatch.setenv("CC", "ccache gcc")
    monkeypatch.setenv("KBUILD_VERBOSE", "1")
    monkeypatch.setenv("PATH_UNRELATED", "x")
    cc_plain = kernel_key(ctx)
    monkeypatch.setenv("CC", "gcc")
    assert kernel_key(ctx) == cc_plain
    monkeypatch.delenv("CC")
    assert kernel_key(ctx) == base

    changes = []
    out(ctx, "kernel.config").write_text("CONFIG_64BIT=y\nCONFIG_X=y\n")
    changes.append(kernel_key(ctx))
    out(ctx, "kernel.config").write_text("CONFIG_64BIT=y\n")
    assert kernel_key(ctx) == base
    for var, value in (("KCFLAGS", "-O3"), ("KBUILD_BUILD_HOST", "h"), ("SOURCE_DATE_EPOCH", "1"), ("CC", "clang")):
        monkeypatch.setenv(var, value)
        changes.append(kernel_key(ctx))
        monkeypatch.delenv(var)
    assert kernel_key(ctx) == base
    taskkey.record(ctx, "configure", "d" * 64, {})  # an upstream key
    changes.append(kernel_key(ctx))
    taskkey.record(ctx, "configure", "c" * 64, {})
    monkeypatch.setitem(tools.TOOLS, "gcc", tools.Tool("gcc", ("echo", "gcc 99")))
    tools.version.cache_clear()
    try:
        changes.append(kernel_key(ctx))  # a tool version
    finally:
        monkeypatch.setitem(tools.TOOLS, "gcc", tools.Tool("gcc", ("gcc", "--version")))
        tools.version.cache_clear()
    assert len(set(changes)) == len(changes) and base not in changes


def test_key_follows_profile_settings_but_not_the_build_location(tmp_path):
    def key(build: str, user: str = "tinyuki") -> str:
        c = context(tmp_path, {"urls": ["/nonexistent.tar.xz"], "sha256": "0" * 64},
                    {"fragments": ["base"], "build_user": user}, build=build)
        c.paths.build.mkdir(parents=True, exist_ok=True)
        tree_json(c, Path(f"/x/{build}/src-{'1' * 64}"))
        out(c, "kernel.config").write_text("CONFIG_64BIT=y\n")
        taskkey.record(c, "configure", "c" * 64, {})
        return taskkey.compute(c, PIPELINE["kernel"], PIPELINE)[0]

    assert key("one") == key("two/deeper")
    assert key("one", user="someone") != key("one")


def test_a_tree_not_named_by_its_hash_is_keyed_by_content(ctx, tmp_path):
    tree = tmp_path / "handmade"
    (tree / "init").mkdir(parents=True)
    (tree / "init" / "main.c").write_text("int x;\n")
    tree_json(ctx, tree)
    k1 = kernel_key(ctx)
    (tree / "init" / "main.c").write_text("int y;\n")
    assert kernel_key(ctx) != k1


def test_a_missing_upstream_key_falls_back_to_its_outputs(ctx):
    taskkey.key_file(ctx, "configure").unlink()
    config = out(ctx, "kernel.config")
    config.write_text("CONFIG_64BIT=y\n")
    k1 = kernel_key(ctx)
    config.write_text("CONFIG_64BIT=y\nCONFIG_X=y\n")
    assert kernel_key(ctx) != k1


def test_a_record_only_its_own_stage_reads_is_not_in_a_later_key(ctx):
    """configure's list of requested options changes with any fragment edit; the kernel reads .config only."""
    requested = ctx.paths.build / "kernel.requested.json"
    requested.write_text("[]")
    k1 = kernel_key(ctx)
    requested.write_text('[{"symbol": "CONFIG_X"}]')
    assert kernel_key(ctx) == k1
