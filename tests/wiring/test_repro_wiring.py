"""`doit repro` against the fake kernel tree: two real pipeline runs, compared stage by stage.

The fake kbuild puts KBUILD_BUILD_* and the objects' (prefix-mapped) paths
into its vmlinux, as the real one does, so the pipeline's settings make both
builds identical. A patch that makes the kernel's Makefile record its build
dir (O=) in the image, as a careless kernel patch can, must be caught and
traced to the embed stage's vmlinux.
"""

from __future__ import annotations

import difflib
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers.doit import environ, run_dodo
from tests.helpers.fakekernel import FAKE, tarball
from tinyuki.tasks import PIPELINE

# every artifact the pipeline declares, in pipeline order; the embedded kernel and all after it
# the artifacts of the stages that are on for every profile (the fake profiles have no [sign]), for x86_64
STAGES = [name for name, stage, out in PIPELINE.artifacts()
          if stage.when is None and out.arch in (None, "x86_64") and out.image is None]
FROM_EMBED = STAGES[STAGES.index("vmlinux"):]

# The project's dodo.py, loaded from another file so the project root is on sys.path.
SHIM = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from dodo import *  # noqa: F403
"""


def leak_patch() -> bytes:
    """A -p1 patch making the Makefile export the build dir as the build host, so it lands in the banner."""
    old = (FAKE / "Makefile").read_text().splitlines(keepends=True)
    new = [*old, "\n", "# records where it was built: not reproducible\n", "export KBUILD_BUILD_HOST := $(O)\n"]
    return "".join(difflib.unified_diff(old, new, "a/Makefile", "b/Makefile")).encode()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("repro")
    tar, sha = tarball(base)
    leaky = base / "patches-leaky"
    leaky.mkdir()
    (leaky / "record-build-dir.patch").write_bytes(leak_patch())
    (leaky / "series").write_text("record-build-dir.patch\n")
    profiles = {}
    for name, patches in (("clean", None), ("leaky", leaky / "series")):
        lines = ["[source]", f'urls = ["{tar}"]', f'sha256 = "{sha}"', "", "[kernel]",
                 'fragments = ["base", "initramfs", "console", "block", "efi", "size"]',
                 *([f'patches = "{patches}"'] if patches else []), "",
                 # musl: the fake tree carries no nolibc headers
                 "[init]", f'sources = ["{ROOT / "init" / "init.c"}"]', 'libc = "musl"', ""]
        profiles[name] = base / f"{name}.toml"
        profiles[name].write_text("\n".join(lines))
    shim = base / "dodo_repro.py"
    shim.write_text(SHIM)
    return {"base": base, "shim": shim, **profiles}


def doit(project: dict[str, Path], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_dodo("repro", *args, dodo=project["shim"], cwd=cwd, env=environ("TINYUKI_PROFILE", "TINYUKI_CACHE_DIR"),
                    timeout=300)


def verdicts(out: str) -> dict[str, str]:
    """artifact -> same/different, from the printed table."""
    rows = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 5 and words[1] in STAGES:
            rows[words[1]] = " ".join(words[4:])
    return rows


def test_two_builds_in_different_surroundings_are_identical(project, tmp_path):
    build = tmp_path / "build"
    proc = doit(project, tmp_path, f"profile={project['clean']}", f"build_dir={build}",
                f"cache_dir={project['base'] / 'cache'}", "jobs=2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"reproducible: all {len(STAGES)} artifacts are bit-identical" in out
    assert verdicts(out) == dict.fromkeys(STAGES, "same"), out

    a = build / "repro" / "a"
    b = build / "repro" / "b-with-a-much-longer-path" / "second-build"
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma["artifacts"] == mb["artifacts"]
    # each build compiled its own kernel, the second one under umask 077 with one more job
    assert (a / "kbuild" / "vmlinux").stat().st_mode & 0o777 == 0o644
    assert (b / "kbuild" / "vmlinux").stat().st_mode & 0o777 == 0o600
    assert "compile init/main.c" in (b / "kbuild" / "fakekernel.log").read_text()
    log_b = (build / "repro" / "build-b.log").read_text()
    assert " -j3 " in log_b and " -j3 " not in (build / "repro" / "build-a.log").read_text()
    assert "TZ=Pacific/Chatham" in out and "umask 077" in out


def test_a_leaked_build_path_is_caught_and_traced_to_its_stage(project, tmp_path):
    repro_dir = tmp_path / "elsewhere"
    proc = doit(project, tmp_path, f"profile={project['leaky']}", f"build_dir={tmp_path / 'build'}",
                f"cache_dir={project['base'] / 'cache'}", f"repro_dir={repro_dir}")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out
    assert verdicts(out) == {n: "different" if n in FROM_EMBED else "same" for n in STAGES}, out
    assert (f"error: not reproducible: {len(FROM_EMBED)} of {len(STAGES)} artifacts differ; the first in pipeline"
            " order is vmlinux (stage embed") in out
    report = repro_dir / "diffoscope-vmlinux.txt"
    assert report.is_file(), out
    assert f"diffoscope report: {report}" in out
    lines = report.read_text().splitlines()
    assert lines[0] == f"--- {repro_dir / 'a' / 'vmlinux'}"
    assert lines[1] == f"+++ {repro_dir / 'b-with-a-much-longer-path' / 'second-build' / 'vmlinux'}"
    # diffoscope's hexdump of B's side (context and added lines), read back as text, shows the leaked build dir
    leaked = "".join(line[52:] for line in lines[3:] if line[:1] in ("+", " ") and line[9:10] == ":")
    assert str(repro_dir / "b-with-a-much-longer-path" / "second-build" / "kbuild") in leaked
    assert not (tmp_path / "build" / "repro").exists()  # repro_dir= moved both builds

    # the same two manifests, compared without building: as from two CI runners
    ma = repro_dir / "a" / "manifest.json"
    mb = repro_dir / "b-with-a-much-longer-path" / "second-build" / "manifest.json"
    proc = doit(project, tmp_path, f"profile={project['leaky']}", f"build_dir={tmp_path / 'build'}",
                f"compare={ma},{mb}")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    assert "the first in pipeline order is vmlinux (stage embed" in out
    assert "make" not in verdicts(out) and "+ env" not in out  # nothing was built

    proc = doit(project, tmp_path, f"profile={project['leaky']}", f"build_dir={tmp_path / 'build'}",
                "--compare", f"{ma},{ma}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"reproducible: all {len(STAGES)} artifacts are bit-identical" in proc.stdout


def test_compare_reports_a_broken_manifest_readably(project, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"artifacts": {"uki": {"path": "u", "size": 1, "sha256": "a" * 64}}}))
    broken = tmp_path / "broken.json"
    broken.write_text('{"artifacts": ')
    proc = doit(project, tmp_path, f"profile={project['clean']}", f"build_dir={tmp_path / 'build'}",
                f"compare={good},{broken}")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    assert f"error: manifest {broken} is not valid JSON" in out

    proc = doit(project, tmp_path, f"profile={project['clean']}", f"build_dir={tmp_path / 'build'}",
                f"compare={good}")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "must name two manifest files" in out
