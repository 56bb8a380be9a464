"""The artifact cache through the real dodo.py, against the fake kernel tree.

Each test runs `doit` in subprocesses, as a user would, on build dirs sharing
one cache. The fake kbuild logs every make it runs in kbuild/fakekernel.log;
a kernel build tree restored from the cache carries the log of the build that
stored it, so "no make ran here" is: the log is exactly the stored one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers import fakekernel
from tests.helpers.doit import cache_outcomes, environ, output, run_dodo, start_dodo, variables
from tests.helpers.stages import CACHED

ARTIFACTS = ["kernel.config", "kernel.requested.json", "init/init", "initramfs.cpio", "initrd.img", "bzImage",
             "vmlinux", "tinyuki.efi"]

pytestmark = fakekernel.NEEDS_MAKE_AND_MUSL


@pytest.fixture
def project(tmp_path, fake_tarball) -> Path:
    """A profile whose program lives in tmp_path (so a test may change it); musl: the fake tree has no nolibc."""
    tar, sha = fake_tarball
    program = tmp_path / "prog"
    program.mkdir()
    shutil.copy(ROOT / "init" / "init.c", program / "init.c")
    for h in (ROOT / "init").glob("*.h"):
        shutil.copy(h, program / h.name)
    return fakekernel.write_profile(tmp_path / "fake.toml", tar, sha, program / "init.c")


def doit(profile: Path, build: Path, *args: str, check: bool = True, start: bool = False):
    args = (*args, *variables(profile=profile, build_dir=build, cache_dir=profile.parent / "cache", jobs=2))
    env = environ("TINYUKI_PROFILE", "TINYUKI_CACHE_DIR", "TINYUKI_ARTIFACT_CACHE")
    if start:
        return start_dodo(*args, cwd=profile.parent, env=env)
    return output(run_dodo(*args, cwd=profile.parent, env=env, timeout=300), check)


def outcome(out: str) -> dict[str, str]:
    """task -> ran / up to date / restored / built (ran and stored), from doit's and the tasks' lines."""
    return cache_outcomes(out, CACHED)


def digests(build: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((build / rel).read_bytes()).hexdigest() for rel in ARTIFACTS}


def fake_log(build: Path) -> str:
    path = build / "kbuild" / "fakekernel.log"
    return path.read_text() if path.exists() else ""


def stored_log(build: Path, cache: Path) -> str:
    """The fake kbuild's log inside the kernel entry this build dir used."""
    cache = cache / "artifacts"
    key = json.loads((build / "keys" / "kernel.json").read_text())["key"]
    return fakekernel.log_in_tree_blob(cache / "blobs", json.loads((cache / "entries" / f"{key}.json").read_text()))


def test_a_second_build_dir_restores_everything_and_builds_nothing(project, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b" / "deeper"
    out = doit(project, a)
    assert {t: outcome(out)[t] for t in CACHED} == dict.fromkeys(CACHED, "built"), out
    assert "make bzImage" in fake_log(a)

    out = doit(project, b)
    assert {t: outcome(out)[t] for t in CACHED} == dict.fromkeys(CACHED, "restored"), out
    assert "kernel build:" not in out and "musl-gcc" not in out, out  # no compiler, no kbuild
    assert fake_log(b) == stored_log(b, tmp_path / "cache"), "a make ran in the second build dir"
    assert digests(b) == digests(a)
    assert "kernel: the build tree is restored too" in out
    stamp = json.loads((b / "kernel.json").read_text())
    assert stamp["tree"] == json.loads((b / "tree.json").read_text())["tree"]

    # the restored build dir is a normal one: the next run does nothing
    out = doit(project, b)
    assert all(v == "up to date" for t, v in outcome(out).items() if t != "summary"), out

    # the shared cache lists each task once
    listing = doit(project, b, "cache")
    for task in CACHED:
        assert any(line.startswith(task + " ") for line in listing.splitlines()), listing
    assert f"{len(CACHED)} entries" in listing


def test_a_changed_input_invalidates_exactly_what_depends_on_it(project, tmp_path):
    a = tmp_path / "a"
    doit(project, a)
    before = digests(a)
    program = tmp_path / "prog" / "init.c"
    original = program.read_text()
    # a source change that leaves the binary as it was: init reruns, and nothing after it
    program.write_text(original.replace("int main", "static int unused_marker;\nint main", 1))
    out = doit(project, a)
    assert {t: outcome(out)[t] for t in CACHED} == {**dict.fromkeys(CACHED, "up to date"), "init": "built"}, out
    assert digests(a) == before

    program.write_text(original.replace('put_str("init: ");', 'put_str("init (v2): ");', 1))
    mark = len(fake_log(a))
    out = doit(project, a)
    o = outcome(out)
    assert {t: o[t] for t in CACHED} == {"configure": "up to date", "kernel": "up to date", "init": "built",
                                        "initramfs": "built", "embed": "built", "uki": "built", "disk": "built"}, out
    relinked = fake_log(a)[mark:]
    assert "make bzImage" in relinked and "compile" not in relinked  # a relink, no kernel compile
    after = digests(a)
    assert [k for k in ARTIFACTS if before[k] != after[k]] == \
        ["init/init", "initramfs.cpio", "initrd.img", "bzImage", "vmlinux", "tinyuki.efi"]

    # back to the old program: the old keys, restored instead of built
    program.write_text(original)
    mark = len(fake_log(a))
    out = doit(project, a)
    o = outcome(out)
    assert {t: o[t] for t in CACHED} == {"configure": "up to date", "kernel": "up to date", "init": "restored",
                                        "initramfs": "restored", "embed": "restored", "uki": "restored",
                                        "disk": "restored"}, out
    assert fake_log(a)[mark:] == ""
    assert digests(a) == before

    # a profile setting that only the UKI uses
    project.write_text(project.read_text() + '\n[uki.os_release]\nID = "other"\n')
    out = doit(project, a)
    o = outcome(out)
    assert {t: o[t] for t in CACHED} == {**dict.fromkeys(CACHED, "up to date"), "uki": "built", "disk": "built"}, out


def test_a_damaged_entry_is_detected_deleted_and_rebuilt(project, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    doit(project, a)
    cache = tmp_path / "cache" / "artifacts"
    kernel_key = json.loads((a / "keys" / "kernel.json").read_text())["key"]
    uki_key = json.loads((a / "keys" / "uki.json").read_text())["key"]
    entry = cache / "entries" / f"{kernel_key}.json"
    entry.write_text(entry.read_text()[:100])  # a truncated entry
    uki_entry = json.loads((cache / "entries" / f"{uki_key}.json").read_text())
    blob = cache / "blobs" / uki_entry["files"]["tinyuki.efi"]["sha256"][:2] / uki_entry["files"]["tinyuki.efi"][
        "sha256"]
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))  # a flipped bit in a blob

    out = doit(project, b)
    o = outcome(out)
    assert o["kernel"] == "built" and o["uki"] == "built", out
    assert o["embed"] == "restored"  # its own entry is intact: the kernel it came from has the same key
    assert f"warning: kernel: the artifact cache entry {kernel_key[:12]}… is damaged" in out
    assert f"warning: uki: the artifact cache entry {uki_key[:12]}… is damaged" in out
    assert "Traceback" not in out
    assert "make bzImage" in fake_log(b)
    assert digests(b) == digests(a)

    out = doit(project, c)  # the rebuild stored good entries again
    assert {t: outcome(out)[t] for t in CACHED} == dict.fromkeys(CACHED, "restored"), out
    assert digests(c) == digests(a)


def test_two_concurrent_runs_on_one_cache_both_succeed(project, tmp_path):
    procs = [doit(project, tmp_path / name, start=True) for name in ("a", "b")]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    out = doit(project, tmp_path / "c")
    assert {t: outcome(out)[t] for t in CACHED} == dict.fromkeys(CACHED, "restored"), out
    assert digests(tmp_path / "c") == digests(tmp_path / "a")
    assert not list((tmp_path / "cache" / "artifacts" / "tmp").iterdir())
