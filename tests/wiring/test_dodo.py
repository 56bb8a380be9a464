"""dodo.py as users meet it: the task list, help, and errors without tracebacks."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.doit import run_dodo
from tinyuki.tasks import PIPELINE

COMMANDS = ["summary", "boot", "pin", "repro", "stats", "cache", "cache-prune", "bench"]


def test_list_shows_every_task_with_a_doc(tmp_path: Path) -> None:
    proc = run_dodo("list", f"build_dir={tmp_path}/b", f"cache_dir={tmp_path}/c")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    for name in [*PIPELINE.names, *COMMANDS]:
        assert name in lines, f"{name} missing from doit list:\n{proc.stdout}"
        assert len(lines[name].split(None, 1)) == 2, f"{name} has no doc line"
    # the stages first, in pipeline order (tasks/__init__.py), then the commands
    assert list(lines)[:len(PIPELINE.names)] == list(PIPELINE.names), proc.stdout


def test_help_explains_task_variables(tmp_path: Path) -> None:
    proc = run_dodo("help", "boot", f"build_dir={tmp_path}/b", f"cache_dir={tmp_path}/c")
    assert proc.returncode == 0
    for var in ("--uki", "--disk", "--accel"):
        assert var in proc.stdout
    assert "disk=VALUE" in proc.stdout


def test_bad_profile_is_one_clean_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[source]\nurls = ["/x.tar.xz"]\nsha256 = "abc"\n[kernel]\nfragments = ["base"]\n')
    proc = run_dodo("list", f"profile={bad}", f"build_dir={tmp_path}/b")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "[source] sha256 'abc' is not a sha256" in proc.stderr
    assert "hint:" in proc.stderr


def test_unknown_profile_name(tmp_path: Path) -> None:
    proc = run_dodo("list", "profile=nosuch", f"build_dir={tmp_path}/b")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "no profile named 'nosuch'" in proc.stderr and "debian" in proc.stderr


def test_failing_action_is_one_clean_error(tmp_path: Path) -> None:
    """A task that fails with a TinyukiError shows message and hint, no traceback, non-zero exit."""
    profile = tmp_path / "missing.toml"
    profile.write_text(
        f'[source]\nurls = ["{tmp_path}/nosuch-linux.tar.xz"]\n'
        'sha256 = "362d07fe4938c415ce651aefee063a5c4151109b39c97be039bbaa8312ffc0e2"\n'
        '[kernel]\nfragments = ["base"]\n'
    )
    proc = run_dodo("fetch", f"profile={profile}", f"build_dir={tmp_path}/b", f"cache_dir={tmp_path}/c")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in out
    assert "error:" in out and "hint:" in out
    assert "nosuch-linux.tar.xz" in out


def test_build_and_cache_dirs_are_honoured(tmp_path: Path) -> None:
    proc = run_dodo("list", f"build_dir={tmp_path}/elsewhere", f"cache_dir={tmp_path}/c")
    assert proc.returncode == 0
    assert (tmp_path / "elsewhere" / ".doit.db").exists() or (tmp_path / "elsewhere").is_dir()
