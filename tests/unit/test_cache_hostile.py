"""Hostile artifact-cache entries: whoever can write cache/ must not be able to write anywhere else.

The tarball suite (test_extract_safetar.py) has its counterpart here: entries
and packed kbuild trees crafted to write through symlinks, repeat names or
escape the build dir. Each is refused as a damaged entry, and nothing outside
the restore's staging directory changes (contents, modes or new files).
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

from tests.helpers.profiles import context
from tests.helpers.tarballs import add_member
from tinyuki.cache import artifacts
from tinyuki.cache import store as cachestore
from tinyuki.cache.store import CorruptEntry, Store
from tinyuki.tasks import PIPELINE

KEY = "cd" * 32


def snapshot(root: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Every path under root with its mode and content (or link target)."""
    out: dict[str, tuple[int, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[str(p)] = (st.st_mode, os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[str(p)] = (st.st_mode, p.read_bytes())
            else:
                out[str(p)] = (st.st_mode, None)
    out[str(root)] = (root.lstat().st_mode, None)
    return out


def tree_blob(members: list[tuple[str, dict]]) -> bytes:
    """A packed tree as put_tree writes it (gzip'd PAX tar), but with any members we like."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, fields in members:
            data = fields.pop("data", None)
            add_member(tar, name, data, **fields)
    return buf.getvalue()


def entry_with_tree(store: Store, blob: bytes, task: str = "kernel", files: dict | None = None) -> dict:
    sha, size = store.put_bytes(blob)
    entry = {"schema": cachestore.SCHEMA, "task": task, "key": KEY, "created": time.time(), "built_in": 1.0,
             "files": files or {}, "trees": {"kbuild": {"sha256": sha, "size": size, "files": 1, "relocated": 0}}}
    store.save_entry(entry)
    return entry


@pytest.fixture
def place(tmp_path: Path) -> dict[str, Path]:
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    (outside / "FILE").write_text("precious\n")
    os.chmod(outside / "FILE", 0o644)
    build = tmp_path / "build"
    build.mkdir()
    return {"outside": outside, "build": build, "store": tmp_path / "cache" / "artifacts", "tree": tmp_path / "tree"}


def refused(place: dict[str, Path], members: list[tuple[str, dict]], files: dict | None = None) -> str:
    store = Store(place["store"])
    entry = entry_with_tree(store, tree_blob(members), files=files)
    before = snapshot(place["outside"])
    locs = {"TREE": place["tree"], "KBUILD": place["build"] / "kbuild", "BUILD": place["build"]}
    with pytest.raises(CorruptEntry) as e:
        store.restore(store.load(KEY) or entry, place["build"], locs)
    assert snapshot(place["outside"]) == before, "a restore changed something outside the build dir"
    assert not (place["build"] / "kbuild").exists(), "a refused tree was put in place"
    return str(e.value)


DIR = {"type": tarfile.DIRTYPE, "mode": 0o755}


def test_a_member_through_a_symlink_spelled_with_dot_slash(place):
    outside = str(place["outside"])
    refused(place, [("zz", {"type": tarfile.SYMTYPE, "linkname": outside}),
                    ("./zz/FILE", {"data": b"owned\n", "mode": 0o644})])


def test_a_symlink_to_an_absolute_path_is_refused(place):
    msg = refused(place, [("zz", {"type": tarfile.SYMTYPE, "linkname": str(place["outside"])})])
    assert "zz" in msg


def test_a_symlink_escaping_by_dotdot_is_refused(place):
    refused(place, [("sub", DIR), ("sub/up", {"type": tarfile.SYMTYPE, "linkname": "../../outside"})])


def test_a_member_named_dot_is_refused(place):
    refused(place, [(".", {"type": tarfile.SYMTYPE, "linkname": str(place["outside"])})])
    refused(place, [(".", {"data": b"x", "mode": 0o644})])


def test_an_empty_member_name_is_refused(place):
    refused(place, [("", {"data": b"x", "mode": 0o644})])


def test_a_member_repeating_a_symlink_name_is_refused(place):
    target = str(place["outside"] / "FILE")
    refused(place, [("zz", {"type": tarfile.SYMTYPE, "linkname": target}),
                    ("zz", {"data": b"owned\n", "mode": 0o644})])


def test_a_directory_after_a_symlink_of_the_same_name_is_refused(place):
    refused(place, [("zz", {"type": tarfile.SYMTYPE, "linkname": str(place["outside"])}),
                    ("zz", {"type": tarfile.DIRTYPE, "mode": 0o777})])


def test_a_duplicate_file_is_refused(place):
    refused(place, [("a", {"data": b"1", "mode": 0o644}), ("a", {"data": b"2", "mode": 0o644})])


def test_a_file_entry_through_kbuilds_source_link_is_refused(place):
    """The build dir's own kbuild/source points at the kernel tree: a files entry must not write through it."""
    kb = place["build"] / "kbuild"
    kb.mkdir()
    os.symlink(place["outside"], kb / "source")
    store = Store(place["store"])
    sha, size = store.put_bytes(b"owned\n")
    entry = {"schema": cachestore.SCHEMA, "task": "kernel", "key": KEY, "created": time.time(), "built_in": 1.0,
             "files": {"kbuild/source/FILE": {"sha256": sha, "size": size, "mode": 0o644, "relocated": False}},
             "trees": {}}
    store.save_entry(entry)
    before = snapshot(place["outside"])
    with pytest.raises(OSError, match="symlink"):  # the build dir's own link: refused, never followed
        store.restore(store.load(KEY), place["build"], {"BUILD": place["build"]})
    assert snapshot(place["outside"]) == before
    assert [p.name for p in kb.iterdir()] == ["source"]  # nothing staged is left behind


def test_links_to_the_relocated_locations_and_inside_the_tree_still_work(place):
    store = Store(place["store"])
    tree_link = cachestore.placeholder("TREE").decode()
    entry_with_tree(store, tree_blob([
        ("sub", DIR), ("sub/f", {"data": b"x", "mode": 0o644}),
        ("source", {"type": tarfile.SYMTYPE, "linkname": tree_link}),
        ("sub/g", {"type": tarfile.SYMTYPE, "linkname": "f"}),
        ("up", {"type": tarfile.SYMTYPE, "linkname": "sub/../sub/f"}),
    ]))
    place["tree"].mkdir()
    store.restore(store.load(KEY), place["build"],
                  {"TREE": place["tree"], "KBUILD": place["build"] / "kbuild", "BUILD": place["build"]})
    kb = place["build"] / "kbuild"
    assert os.readlink(kb / "source") == str(place["tree"])
    assert (kb / "sub" / "g").read_bytes() == b"x" and (kb / "up").read_bytes() == b"x"


def test_only_the_stages_declared_outputs_are_restored(tmp_path):
    """An entry of the init stage that also lists another file (a script in the build dir) is not restored."""
    ctx = context(tmp_path, {"urls": ["/nonexistent.tar.xz"], "sha256": "0" * 64})
    ctx.paths.build.mkdir(parents=True)
    store = artifacts.store_for(ctx)
    init_sha, init_size = store.put_bytes(b"\x7fELF program")
    evil_sha, evil_size = store.put_bytes(b"#!/bin/sh\necho owned\n")
    entry = {"schema": cachestore.SCHEMA, "task": "init", "key": KEY, "created": time.time(), "built_in": 1.0,
             "files": {"init/init": {"sha256": init_sha, "size": init_size, "mode": 0o755, "relocated": False},
                       "logs/evil.sh": {"sha256": evil_sha, "size": evil_size, "mode": 0o755, "relocated": False}},
             "trees": {}}
    store.save_entry(entry)
    assert artifacts.try_restore(ctx, PIPELINE["init"], KEY, store) is None
    assert not (ctx.paths.build / "logs" / "evil.sh").exists()
    assert not (ctx.paths.build / "init" / "init").exists()
    assert not store.entry_path(KEY).exists()  # deleted as damaged


def test_a_stage_restore_writes_only_below_the_build_dir_even_with_a_symlinked_output_dir(tmp_path):
    """build/init -> elsewhere: the restore refuses to write the program through that link."""
    ctx = context(tmp_path, {"urls": ["/nonexistent.tar.xz"], "sha256": "0" * 64})
    ctx.paths.build.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, ctx.paths.build / "init")
    store = artifacts.store_for(ctx)
    sha, size = store.put_bytes(b"\x7fELF program")
    store.save_entry({"schema": cachestore.SCHEMA, "task": "init", "key": KEY, "created": time.time(),
                      "built_in": 1.0, "trees": {},
                      "files": {"init/init": {"sha256": sha, "size": size, "mode": 0o755, "relocated": False}}})
    assert artifacts.try_restore(ctx, PIPELINE["init"], KEY, store) is None
    assert list(elsewhere.iterdir()) == []


def test_entry_json_is_what_it_claims(tmp_path):
    """Sanity: a crafted entry file is loaded as written (the tests above go through the real loader)."""
    store = Store(tmp_path / "a")
    entry = entry_with_tree(store, tree_blob([("a", {"data": b"1", "mode": 0o644})]))
    assert json.loads(store.entry_path(KEY).read_text()) == entry
