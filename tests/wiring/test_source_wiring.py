"""The real doit tasks fetch -> verify -> extract -> patch against a local mirror and a test key.

Runs dodo.py in a subprocess, as a user would, and reads which tasks ran from
doit's own output ("." ran, "--" up to date).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers import gpgkeys, tarballs
from tests.helpers.doit import environ, outcomes, output, run_dodo, variables
from tests.helpers.httpserver import Route, serve
from tests.helpers.profiles import write_profile

TAR = tarballs.tar_bytes()
SHA = hashlib.sha256(TAR).hexdigest()
STAGES = ["fetch", "verify", "extract", "patch"]

PATCH = b"""--- a/README
+++ b/README
@@ -1 +1 @@
-Linux kernel (test tree)
+Linux kernel (patched by tinyuki)
"""


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    base = tmp_path_factory.mktemp("keys")
    yield gpgkeys.make_key(base, "wiring")
    gpgkeys.stop_agents(base)


def run(tmp: Path, profile: Path, *tasks: str) -> subprocess.CompletedProcess[str]:
    """dodo.py run from `tmp` (the project on PYTHONPATH), on a build and cache dir in `tmp`."""
    return run_dodo(*tasks, *variables(profile=profile, build_dir=tmp / "build", cache_dir=tmp / "cache"), cwd=tmp,
                    env=environ(PYTHONPATH=str(ROOT)))


def doit(tmp: Path, profile: Path) -> tuple[dict[str, str], str]:
    proc = run(tmp, profile, *STAGES)
    out = output(proc)
    assert proc.returncode == 0, out
    return outcomes(proc.stdout), out


def test_pipeline_reruns_only_what_changed(tmp_path, key):
    with serve() as server:
        url = server.add("/linux-9.9.tar.xz", Route(TAR))
        sig = key.sign(tarballs.uncompressed(TAR), tmp_path / "linux-9.9.tar.sign")
        sig_url = server.add("/linux-9.9.tar.sign", Route(sig.read_bytes()))
        patches = tmp_path / "patches"
        patches.mkdir()
        (patches / "readme.patch").write_bytes(PATCH)
        (patches / "series").write_text("# test series\nreadme.patch\n")
        profile = write_profile(tmp_path / "local.toml", {
            "urls": [url], "sha256": SHA, "signature": sig_url, "signers": [key.fingerprint],
            "keyrings": [str(key.public)], "retries": 1, "timeout": 5,
        }, {"patches": str(patches / "series")})

        ran, out = doit(tmp_path, profile)
        assert ran == dict.fromkeys(STAGES, "ran"), out
        tree = Path(json.loads((tmp_path / "build" / "tree.json").read_text())["tree"])
        assert (tree / "README").read_text() == "Linux kernel (patched by tinyuki)\n"

        ran, out = doit(tmp_path, profile)
        assert ran == dict.fromkeys(STAGES, "up to date"), out

        time.sleep(0.01)
        (patches / "readme.patch").write_bytes(PATCH)  # touched, same bytes
        os.utime(patches / "readme.patch")
        ran, out = doit(tmp_path, profile)
        assert ran == dict.fromkeys(STAGES, "up to date"), out

        (patches / "readme.patch").write_bytes(PATCH.replace(b"by tinyuki", b"again"))
        ran, out = doit(tmp_path, profile)
        assert ran == {"fetch": "up to date", "verify": "up to date", "extract": "up to date", "patch": "ran"}, out
        tree2 = Path(json.loads((tmp_path / "build" / "tree.json").read_text())["tree"])
        assert tree2 != tree and (tree2 / "README").read_text() == "Linux kernel (patched again)\n"

        # an output deleted from the cache is rebuilt, from the stored tarball, without a download
        requests_before = len(server.server.routes["/linux-9.9.tar.xz"].requests)
        pristine = tmp_path / "cache" / "trees" / f"src-{SHA}"
        shutil.rmtree(pristine)
        ran, out = doit(tmp_path, profile)
        assert ran["extract"] == "ran" and pristine.is_dir(), out
        assert len(server.server.routes["/linux-9.9.tar.xz"].requests) == requests_before


def test_failed_verification_fails_the_run_readably(tmp_path, key):
    with serve() as server:
        url = server.add("/linux-9.9.tar.xz", Route(TAR))
        profile = write_profile(tmp_path / "bad.toml", {"urls": [url], "sha256": "a" * 64, "retries": 1})
        proc = run(tmp_path, profile, "patch")
        out = output(proc)
        assert proc.returncode != 0
        assert "error: sha256 mismatch" in out and "Traceback" not in out
        store = tmp_path / "cache" / "sha256"
        assert not store.exists() or not [p for p in store.rglob("*") if p.is_file()]
        assert not (tmp_path / "cache" / "trees").exists()
