"""A run stopped by SIGTERM records the tasks that finished, as Ctrl-C does.

doit writes its database when a run ends; a plain SIGTERM used to skip that, so the next run took a task
whose input had changed under it for up to date. Here: task `first` finishes, `second` is still running
when the run gets SIGTERM; the next run must find `first` up to date and its record intact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT

DODO = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from tinyuki.cli.actions import stop_like_ctrl_c

stop_like_ctrl_c()
DOIT_CONFIG = {{"dep_file": "state.db", "backend": "sqlite3", "verbosity": 2}}


def task_first():
    return {{"actions": ["cp in.txt first.txt"], "file_dep": ["in.txt"], "targets": ["first.txt"]}}


def task_second():
    return {{"actions": ["touch second.started && sleep 60"], "task_dep": ["first"], "uptodate": [False]}}
"""


def doit(top: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "doit", "-f", str(top / "dodo.py"), *args], cwd=top,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_sigterm_mid_run_keeps_the_finished_tasks_record(tmp_path: Path) -> None:
    (tmp_path / "dodo.py").write_text(DODO)
    (tmp_path / "in.txt").write_text("one\n")
    run = doit(tmp_path, "second")
    deadline = time.monotonic() + 60
    while not (tmp_path / "second.started").exists():
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGTERM)  # as `kill` of a job, `timeout` or a stopped CI step does
    out = run.communicate(timeout=30)[0]
    assert run.returncode == 128 + signal.SIGTERM and "Traceback" not in out, out
    assert "stopped by SIGTERM: the stages that finished are recorded" in out
    again = doit(tmp_path, "first")
    out = again.communicate(timeout=60)[0]
    assert again.returncode == 0 and "-- first" in out, out  # up to date: its record was written


def test_the_pipeline_installs_it(tmp_path: Path) -> None:
    probe = (f"import sys, signal; sys.path.insert(0, {str(ROOT)!r}); import tinyuki.dodo; "
             "print(signal.getsignal(signal.SIGTERM).__name__, signal.getsignal(signal.SIGHUP).__name__)")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["_interrupted", "_interrupted"], proc.stdout + proc.stderr
