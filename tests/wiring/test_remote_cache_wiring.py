"""The remote artifact cache through the real dodo.py, the fake kernel tree and a real nginx (WebDAV PUT).

"Machines" are pairs of a cache dir and a build dir that share nothing but the
remote. The fake kbuild logs every make it runs in kbuild/fakekernel.log, and
a kernel build tree restored from a cache carries the log of the build that
stored it; so "no compiler ran on this machine" is: the log is exactly the
stored one, and the program's compiler (musl-gcc) was never echoed.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers import fakekernel, hostilecache, nginx
from tests.helpers.daemons import free_port
from tests.helpers.doit import cache_outcomes, environ, output, run_dodo, variables
from tests.helpers.stages import CACHED
from tinyuki.cache.store import GIB, Store

ARTIFACTS = ["kernel.config", "init/init", "initramfs.cpio", "initrd.img", "bzImage", "vmlinux", "tinyuki.efi"]
PASSWORD = "team-s3cret-pw"

pytestmark = fakekernel.NEEDS_MAKE_AND_MUSL


@pytest.fixture
def project(tmp_path, fake_tarball) -> Path:
    tar, sha = fake_tarball
    return fakekernel.write_profile(tmp_path / "fake.toml", tar, sha, ROOT / "init" / "init.c")


@pytest.fixture
def server(tmp_path):
    with nginx.serve(tmp_path, users={"ci": PASSWORD}) as srv:
        yield srv


def doit(profile: Path, machine: str, *args: str, check: bool = True, build: str = "build",
         env_add: dict[str, str] | None = None, **remote: object) -> str:
    """A run on "machine" (its own cache dir and build dir; ccache off), with remote settings as doit variables."""
    top = profile.parent / machine
    args = (*args, *variables(profile=profile, build_dir=top / build, cache_dir=top / "cache", jobs=2, ccache=0,
                              **remote))
    env = environ("TINYUKI_*", **(env_add or {}))
    return output(run_dodo(*args, cwd=profile.parent, env=env, timeout=300), check)


def outcome(out: str) -> dict[str, str]:
    """stage -> remote (restored from the remote), local (restored from the local store), built, or doit's word."""
    result = cache_outcomes(out, CACHED, remote=True)
    return {t: result.get(t, "?") for t in CACHED}


def build_dir(profile: Path, machine: str) -> Path:
    return profile.parent / machine / "build"


def digests(build: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((build / rel).read_bytes()).hexdigest() for rel in ARTIFACTS}


def fake_log(build: Path) -> str:
    path = build / "kbuild" / "fakekernel.log"
    return path.read_text() if path.exists() else ""


def remote_entry(root: Path, build: Path, stage: str) -> tuple[str, Path, dict]:
    key = json.loads((build / "keys" / f"{stage}.json").read_text())["key"]
    path = root / "entries" / f"{key}.json"
    return key, path, json.loads(path.read_text())


def stored_log(root: Path, build: Path) -> str:
    _, _, entry = remote_entry(root, build, "kernel")
    return fakekernel.log_in_tree_blob(root / "blobs", entry)


def test_a_fresh_machine_gets_the_uki_from_a_warm_remote_without_compiling(project, server):
    url = server.url_with("ci", PASSWORD)
    out = doit(project, "a", artifact_remote=url)
    assert outcome(out) == dict.fromkeys(CACHED, "built"), out
    assert all(f"{t}: pushed to the remote artifact cache http://***@127.0.0.1:{server.port}" in out for t in CACHED)
    assert PASSWORD not in out
    a = build_dir(project, "a")
    assert "make bzImage" in fake_log(a) and "musl-gcc" in out

    out = doit(project, "b", artifact_remote=server.url)  # reads need no password
    b = build_dir(project, "b")
    assert outcome(out) == dict.fromkeys(CACHED, "remote"), out
    assert "musl-gcc" not in out and "kernel build:" not in out, out  # no compiler, no kbuild
    assert fake_log(b) == stored_log(server.root, b), "a make ran on the fresh machine"
    assert digests(b) == digests(a)
    assert not (project.parent / "b" / "cache" / "ccache").exists()
    # what was pulled is in the fresh machine's local store now: a third build dir there restores locally
    out = doit(project, "b", build="again")
    assert outcome(out) == dict.fromkeys(CACHED, "local"), out

    stats = doit(project, "b", "stats", artifact_remote=server.url)
    rows = {cells[0]: cells for cells in ([c.strip() for c in x.strip("|").split("|")]
                                          for x in stats.splitlines() if x.startswith("| artifacts"))}
    assert rows["artifacts (remote)"][4:6] == [str(len(CACHED)), "0"], stats  # hits, misses
    assert rows["artifacts (remote)"][1] == server.url, stats
    assert re.search(r"downloaded [\d.]+ [KM]iB \(\d+ blobs\)", rows["artifacts (remote)"][6]), stats
    assert rows["artifacts"][4] == f"{len(CACHED)} (local 0, remote {len(CACHED)})", stats


def test_tampered_blobs_and_truncated_entries_are_refused_and_rebuilt_then_repaired(project, server):
    url = server.url_with("ci", PASSWORD)
    doit(project, "a", artifact_remote=url)
    a = build_dir(project, "a")
    # a truncated kernel entry and a tampered UKI blob on the server
    _, kernel_path, _ = remote_entry(server.root, a, "kernel")
    kernel_path.write_text(kernel_path.read_text()[:120])
    uki_key, _, uki = remote_entry(server.root, a, "uki")
    sha = uki["files"]["tinyuki.efi"]["sha256"]
    blob = server.root / "blobs" / sha[:2] / sha
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x40
    blob.write_bytes(bytes(data))

    out = doit(project, "c", artifact_remote=url)
    o = outcome(out)
    assert o["kernel"] == "built" and o["uki"] == "built", out
    assert o["configure"] == o["init"] == o["initramfs"] == "remote", out
    assert "warning: kernel: refused the remote artifact cache's entry" in out and "not valid JSON" in out
    assert f"warning: uki: refused the remote artifact cache's entry {uki_key[:12]}…" in out
    assert "does not match its sha256" in out
    assert "Traceback" not in out and PASSWORD not in out
    assert digests(build_dir(project, "c")) == digests(a)
    # the rebuilding machine pushed good copies: the next fresh machine restores everything
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == sha
    out = doit(project, "d", artifact_remote=url)
    assert outcome(out) == dict.fromkeys(CACHED, "remote"), out
    assert digests(build_dir(project, "d")) == digests(a)


def test_a_server_that_is_down_or_failing_costs_a_warning_never_the_build(project, tmp_path):
    out = doit(project, "a", artifact_remote=f"http://ci:{PASSWORD}@127.0.0.1:{free_port()}")
    assert outcome(out) == dict.fromkeys(CACHED, "built"), out
    assert out.count("cannot be reached") == 1, out  # asked once, then left alone for the run
    assert "was found down earlier in this run" in out
    assert PASSWORD not in out and "Traceback" not in out
    good = digests(build_dir(project, "a"))

    with hostilecache.serve() as srv:
        srv.state.faults["*"] = hostilecache.Fault(status=500)
        out = doit(project, "b", artifact_remote=srv.url)
        assert outcome(out) == dict.fromkeys(CACHED, "built"), out
        assert "answered 500" in out and "could not push to the remote artifact cache" in out, out
        assert "Traceback" not in out
        assert digests(build_dir(project, "b")) == good


def test_read_only_pulls_but_never_writes(project, server):
    out = doit(project, "a", artifact_remote=server.url, artifact_remote_mode="ro")
    assert outcome(out) == dict.fromkeys(CACHED, "built"), out
    assert "pushed to the remote" not in out
    assert not any(server.root.iterdir())
    assert " PUT " not in server.log()
    # a writer fills it; the read-only reader then restores everything and still writes nothing
    doit(project, "w", artifact_remote=server.url_with("ci", PASSWORD))
    puts = server.log().count('"PUT ')
    out = doit(project, "r", artifact_remote=server.url, artifact_remote_mode="ro")
    assert outcome(out) == dict.fromkeys(CACHED, "remote"), out
    assert server.log().count('"PUT ') == puts


def test_readers_with_trusted_keys_take_only_entries_signed_by_them(project, server, tmp_path):
    keys = {}
    for name in ("team", "intruder"):
        key = tmp_path / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
        keys[name] = key
    url = server.url_with("ci", PASSWORD)
    out = doit(project, "a", artifact_remote=url, artifact_signing_key=keys["team"])
    assert "(signed)" in out
    trusted = tmp_path / "trusted.pub"
    trusted.write_text(Path(f"{keys['team']}.pub").read_text())
    out = doit(project, "b", artifact_remote=server.url, artifact_trusted_keys=trusted)
    assert outcome(out) == dict.fromkeys(CACHED, "remote"), out

    # the intruder, who can write to the server, replaces the UKI's entry with one signed by another key
    a = build_dir(project, "a")
    uki_key, uki_path, _ = remote_entry(server.root, a, "uki")
    uki_path.unlink()
    out = doit(project, "x", artifact_remote=url, artifact_signing_key=keys["intruder"])
    assert outcome(out)["uki"] == "built", out
    out = doit(project, "c", artifact_remote=server.url, artifact_trusted_keys=trusted)
    o = outcome(out)
    assert o["uki"] == "built" and o["kernel"] == "remote", out
    assert f"warning: uki: refused the remote artifact cache's entry {uki_key[:12]}…" in out
    assert "not by a trusted key" in out
    # and an unsigned one the same
    uki_path.unlink()
    doit(project, "y", artifact_remote=url)
    out = doit(project, "d", artifact_remote=server.url, artifact_trusted_keys=trusted)
    assert outcome(out)["uki"] == "built" and "is not signed" in out, out
    assert digests(build_dir(project, "d")) == digests(a)


def test_the_ci_cache_step_prunes_and_writes_the_job_summary(project, tmp_path):
    doit(project, "a")
    out = doit(project, "a", build="b")  # all restored from the local store
    assert outcome(out) == dict.fromkeys(CACHED, "local"), out
    summary = tmp_path / "summary.md"
    top = project.parent / "a"
    store = Store(top / "cache" / "artifacts")
    limit = (store.disk_usage() - 1) / GIB  # something must go, the newest entries stay
    env = environ("TINYUKI_*", GITHUB_STEP_SUMMARY=str(summary), CACHE_KEEP_GIB=f"{limit:.12f}",
                  TINYUKI_CACHE_DIR=str(top / "cache"))
    proc = subprocess.run([str(ROOT / "scripts" / "ci-cache.sh"), f"profile={project}", f"build_dir={top / 'b'}",
                           "ccache=0"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cache-prune: kept" in proc.stdout, proc.stdout
    text = summary.read_text()
    assert f"restored {len(CACHED)} of {len(CACHED)} cached stages in the last run here ({len(CACHED)} from the" \
           " local store, 0 from the remote), built 0" in text, text
    assert f"| `{top / 'cache'}/artifacts` |" in text and "**total** (not `" in text, text
    assert "Traceback" not in text
    # pruned before saving: the least recently used entries went, what is left fits the limit
    kept = [entry for _key, entry, _st in store.list()]
    assert 0 < len(kept) < len(CACHED)
    assert sum(sum(store.blob_sizes(e).values()) for e in kept if e) <= limit * GIB


def test_restore_only_mode_fails_rather_than_compile_and_restores_from_the_remote(project, server):
    restore_only = {"TINYUKI_ARTIFACT_CACHE": "restore"}
    out = doit(project, "a", check=False, env_add=restore_only, artifact_remote=server.url)
    # whichever of the first cached stages doit starts (configure and init both follow patch) stops the run
    assert re.search(r"error: (configure|init): not in the artifact cache", out) and "forbids building it" in out, out
    assert "musl-gcc" not in out and fake_log(build_dir(project, "a")) == "", out
    doit(project, "w", artifact_remote=server.url_with("ci", PASSWORD))
    out = doit(project, "b", env_add=restore_only, artifact_remote=server.url)
    assert outcome(out) == dict.fromkeys(CACHED, "remote"), out
