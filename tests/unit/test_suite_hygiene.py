"""The test suite itself: no skipped requirement in CI, and no gpg-agent left running after it.

Both are checked by running pytest on a small test directory that uses the
project's own conftest hooks, the way the suite uses them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.helpers.daemons import processes

ROOT = Path(__file__).resolve().parents[2]

CONFTEST = """
import sys
sys.path.insert(0, {root!r})
from tests.conftest import pytest_runtest_makereport, pytest_sessionfinish  # noqa: F401
"""

NEEDS = """
import shutil
import pytest


def test_needs_redis():
    if shutil.which("redis-server-that-is-not-there") is None:
        pytest.skip("redis-server is not installed (Debian package redis-server, scripts/setup.sh)")


@pytest.mark.skipif(True, reason="musl-gcc is not installed")
def test_needs_musl():
    pass


def test_skipped_for_another_reason():
    pytest.skip("user namespaces are not available here")
"""

AGENT = """
import sys
sys.path.insert(0, {root!r})
from tests.helpers import gpgkeys


def test_makes_a_key(tmp_path):
    gpgkeys.make_key(tmp_path, "leaky")  # starts a gpg-agent for its home, and leaves it
"""


def run_suite(tmp_path: Path, tests: str, *, ci: str | None, base: Path | None = None) -> \
        subprocess.CompletedProcess[str]:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(CONFTEST.format(root=str(ROOT)))
    (suite / "test_it.py").write_text(tests.format(root=str(ROOT)))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
                           "--basetemp", str(base or tmp_path / "base"), "--rootdir", str(suite), str(suite)],
                          capture_output=True, text=True, env=env, cwd=suite, timeout=300)


def test_a_missing_tool_skips_locally(tmp_path):
    proc = run_suite(tmp_path, NEEDS, ci=None)
    assert proc.returncode == 0, proc.stdout
    assert "3 skipped" in proc.stdout


def test_a_missing_tool_fails_in_ci(tmp_path):
    proc = run_suite(tmp_path, NEEDS, ci="true")
    assert proc.returncode == 1, proc.stdout
    # a skip in the test body fails the test, one in its setup (a skipif mark) errors it: neither passes
    assert "1 failed" in proc.stdout and "1 error" in proc.stdout and "1 skipped" in proc.stdout, proc.stdout
    assert "FAILED test_it.py::test_needs_redis - CI=true" in proc.stdout
    assert "ERROR test_it.py::test_needs_musl - CI=true" in proc.stdout


def agents_under(base: Path) -> list[str]:
    return [" ".join(argv) for _pid, argv, zombie in processes()
            if not zombie and any(a.startswith(str(base)) for a in argv) and "gpg-agent" in argv[0]]


def test_no_gpg_agent_outlives_the_suite(tmp_path):
    # gpg-agent's socket lives in its home when /run/user/UID is missing: keep the path short
    base = Path(tempfile.mkdtemp(prefix="tkh-", dir="/tmp")) / "b"
    proc = run_suite(tmp_path, AGENT, ci=None, base=base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    left = agents_under(base)
    for line in left:  # never leave them running, even when this test fails
        home = line.split("--homedir", 1)[1].split()[0]
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], check=False)
    shutil.rmtree(base.parent, ignore_errors=True)
    assert left == []
