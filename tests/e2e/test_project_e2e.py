"""tinyuki as a tool in the user's own repository: installed from a wheel, run where the program lives.

A wheel is built from the checkout and installed into a fresh venv made with Debian's own
/usr/bin/python3 (3.11.2 on bookworm). Two projects live in a temp dir, far from the clone: the
first is made by `tinyuki init` and built and booted with its own `doit`; the second, another program
in another directory (its source outside the project, by a `..` path), is built with the `tinyuki`
command and must restore the kernel from the user's cache, compiling no kernel object. The first
project's artifacts must be the bytes the clone builds from the same profile.

The user's cache starts with what the session's build verified and built (tests/e2e/conftest.py), as
on a machine that has built a tinyuki kernel before: every stage that is not restored runs for real.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, TARBALL
from tests.helpers.doit import environ, output, run_dodo, variables
from tinyuki.util.fs import read_json, sha256_file

DEBIAN_PYTHON = Path("/usr/bin/python3")
LINE = "hello from C (nolibc)"

pytestmark = pytest.mark.skipif(not TARBALL.exists(), reason=f"{TARBALL} missing: scripts/setup.sh installs it")


def run(cmd: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 1800) -> str:
    """A command that must succeed; its output (stdout then stderr), the last part of which a failure shows."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} in {cwd} exited {proc.returncode}:\n{out[-6000:]}"
    return out


@pytest.fixture(scope="module")
def tool(tmp_path_factory: pytest.TempPathFactory, build: dict[str, Path]) -> dict[str, object]:
    """The wheel installed into a fresh venv of Debian's Python, and a user whose cache has built before."""
    assert DEBIAN_PYTHON.exists(), "Debian's own python3 is missing: apt-get install python3 python3-venv"
    top = tmp_path_factory.mktemp("tool")
    plain = environ("TINYUKI_*", "PYTHONPATH", "VIRTUAL_ENV", "XDG_CACHE_HOME")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", "-w",
         top / "dist", ROOT], cwd=top, env=plain, timeout=600)
    wheels = sorted((top / "dist").glob("tinyuki-*.whl"))
    assert len(wheels) == 1, wheels
    venv = top / "venv"
    run([DEBIAN_PYTHON, "-m", "venv", venv], cwd=top, env=plain)
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
         ROOT / "requirements" / "runtime.txt", wheels[0]], cwd=top, env=plain, timeout=900)
    cache = top / "xdg" / "tinyuki"
    cache.mkdir(parents=True)
    for part in ("sha256", "locks", "trees", "artifacts"):
        if (build["cache"] / part).exists():  # hard links: the cache only ever replaces files by rename
            subprocess.run(["cp", "-al", str(build["cache"] / part), str(cache / part)], check=True)
    if (build["cache"] / "ccache").exists():  # ccache writes into its files: a copy
        shutil.copytree(build["cache"] / "ccache", cache / "ccache", symlinks=True)
    # HOME stays: tools found through it (a rustup toolchain) answer the same as in the session's build
    env = {**plain, "PATH": f"{venv / 'bin'}:{plain['PATH']}", "XDG_CACHE_HOME": str(top / "xdg")}
    return {"top": top, "venv": venv, "cache": cache, "env": env}


@pytest.fixture(scope="module")
def first(tool: dict[str, object]) -> dict[str, object]:
    """`tinyuki init` in a new directory, then its own `doit`: the project's UKI."""
    top, env = Path(str(tool["top"])), dict(tool["env"])  # type: ignore[call-overload]
    project = top / "projects" / "hello"
    project.mkdir(parents=True)
    made = run(["tinyuki", "init"], cwd=project, env=env)
    out = run(["doit"], cwd=project, env=env)
    return {"project": project, "init": made, "build": out, "dir": project / "build" / "tinyuki", "env": env}


def test_the_installed_tool_carries_its_files_and_needs_no_clone(tool: dict[str, object]) -> None:
    env = dict(tool["env"])  # type: ignore[call-overload]
    venv = Path(str(tool["venv"]))
    where = run([venv / "bin" / "python", "-c", "import sys, tinyuki.resources as r; print(r.DATA, r.CLONE, "
                 "sys.version_info[:3])"], cwd=Path(str(tool["top"])), env=env)
    data, clone, version = where.split(maxsplit=2)
    assert data.startswith(str(venv)) and data.endswith("tinyuki/_data") and clone == "None", where
    assert version.strip() == str(tuple(int(x) for x in subprocess.run(
        [str(DEBIAN_PYTHON), "-c", "import sys; print(*sys.version_info[:3])"], capture_output=True, text=True,
        check=True).stdout.split())), where  # Debian's own interpreter
    for rel in ("configs/fragments/base.config", "configs/profiles/debian.toml", "configs/keys/gregkh.asc",
                "patches/boot-time/series", "init/init.c", "examples/hello-c/hello.c"):
        assert (Path(data) / rel).is_file(), rel


def test_a_new_project_builds_its_uki_and_boots_its_program(first: dict[str, object]) -> None:
    project, build = Path(str(first["project"])), Path(str(first["dir"]))
    assert {p.name for p in project.iterdir()} >= {"tinyuki.toml", "main.c", "dodo.py", ".gitignore", ".github",
                                                    "build"}
    assert not (project / "cache").exists()  # the cache is the user's, not the project's
    assert "tinyuki.efi" in str(first["build"])
    for name in ("tinyuki.efi", "tinyuki.img", "manifest.json", "bzImage"):
        assert (build / name).is_file(), name
    manifest = read_json(build / "manifest.json")
    assert manifest["inputs"]["init_sources"][0]["path"] == "main.c"
    assert manifest["inputs"]["profile"]["path"] == "tinyuki.toml"
    assert manifest["inputs"]["fragments"][0]["path"].startswith("tinyuki:configs/fragments/")
    out = run(["doit", "boot"], cwd=project, env=dict(first["env"]))  # type: ignore[call-overload]
    assert LINE in out and "exit status: 0" in out, out[-4000:]


def test_a_second_project_elsewhere_restores_the_kernel_and_compiles_no_kernel_object(
        tool: dict[str, object], first: dict[str, object]) -> None:
    top, env = Path(str(tool["top"])), dict(tool["env"])  # type: ignore[call-overload]
    project = top / "elsewhere" / "greeter"
    shared = top / "elsewhere" / "shared"
    project.mkdir(parents=True)
    shared.mkdir()
    run(["tinyuki", "init"], cwd=project, env=env)
    # another program, kept outside the project and named by a path that leaves it
    hello = (project / "main.c").read_text()
    (shared / "greeter.c").write_text(hello.replace('say("hello from C', 'say("greetings from elsewhere, in C'))
    (project / "main.c").unlink()
    profile = project / "tinyuki.toml"
    profile.write_text(profile.read_text().replace('sources = ["main.c"]', 'sources = ["../shared/greeter.c"]'))
    out = run(["tinyuki"], cwd=project, env=env)  # the command, no dodo.py needed
    assert "kernel: restored from artifact cache" in out, out[-6000:]
    assert "kernel build:" not in out
    build = project / "build" / "tinyuki"
    compiled = [line for line in (build / "logs" / "embed.log").read_text().splitlines() if line.startswith("  CC ")]
    assert len(compiled) <= 5, compiled  # the relink's own few (the decompressor embeds the image size)
    assert not (build / "logs" / "kernel.log").exists() or "  CC " not in (build / "logs" / "kernel.log").read_text()
    manifest = read_json(build / "manifest.json")
    assert manifest["inputs"]["init_sources"][0]["path"] == "../shared/greeter.c"  # as the profile wrote it
    assert manifest["artifacts"]["bzImage"]["sha256"] != read_json(Path(str(first["dir"])) / "manifest.json")[
        "artifacts"]["bzImage"]["sha256"]  # another program embedded
    booted = run(["tinyuki", "boot"], cwd=project, env=env)
    assert "greetings from elsewhere, in C (nolibc)" in booted and "exit status: 0" in booted, booted[-4000:]


def test_the_clone_builds_the_same_bytes_from_the_projects_profile(tool: dict[str, object],
                                                                   first: dict[str, object]) -> None:
    """The clone's dodo.py on the project's tinyuki.toml: every artifact of the project's manifest, bit for bit."""
    top = Path(str(tool["top"]))
    project, build = Path(str(first["project"])), top / "clone-build"
    proc = run_dodo("manifest", *variables(profile=project / "tinyuki.toml", build_dir=build,
                                           cache_dir=tool["cache"]),
                    env=environ("TINYUKI_*", "XDG_CACHE_HOME"), timeout=1800)
    out = output(proc)
    assert proc.returncode == 0, out[-6000:]
    assert not re.search(r"^init: restored", out, flags=re.M), "the clone must compile the program itself"
    mine = read_json(Path(str(first["dir"])) / "manifest.json")["artifacts"]
    clones = read_json(build / "manifest.json")["artifacts"]
    assert {k: v["sha256"] for k, v in clones.items()} == {k: v["sha256"] for k, v in mine.items()}
    assert sha256_file(build / "tinyuki.efi") == sha256_file(Path(str(first["dir"])) / "tinyuki.efi")


def test_doit_auto_boot_rebuilds_and_boots_again_when_the_program_is_saved(first: dict[str, object]) -> None:
    """doit's own watcher in the project: boots, then a saved edit of main.c is built and booted by itself."""
    project = Path(str(first["project"]))
    program = project / "main.c"
    original = program.read_text()
    lines: queue.Queue[str] = queue.Queue()
    proc = subprocess.Popen(["doit", "auto", "boot"], cwd=project, env=dict(first["env"]),  # type: ignore[call-overload]
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []], daemon=True).start()
    seen: list[str] = []

    def wait_for(text: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} within {seconds:.0f} s of doit auto boot:\n{''.join(seen)[-4000:]}")

    try:
        wait_for(LINE, 600)
        wait_for("exit status: 0", 120)
        program.write_text(original.replace('say("hello from C', 'say("hello again from C'))
        wait_for("hello again from C (nolibc)", 600)
        wait_for("exit status: 0", 120)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        program.write_text(original)
    assert any(line.startswith("init: ") for line in seen), "".join(seen)[-4000:]  # rebuilt by itself
