"""Running doit for the tests: the project's real dodo.py in a subprocess, or stages in this process.

`run_dodo` (and `dodo_ok`, `start_dodo`) run `python -m doit -f dodo.py ...` as a
user would; `run_stages` runs some of the pipeline's stages (tasks.PIPELINE) as
doit tasks for one Context, in this process, the way dodo.py declares them.
`outcomes` and `ran` read which tasks ran from doit's own output.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain

from tinyuki.cli.checkers import Sha256Checker
from tinyuki.cli.stages import task_dict
from tinyuki.config.context import Context
from tinyuki.tasks import PIPELINE

ROOT = Path(__file__).resolve().parents[2]
DODO = ROOT / "dodo.py"


# ---------------------------------------------------------------- dodo.py in a subprocess

def dodo_command(*args: str, dodo: Path = DODO) -> list[str]:
    """The command line of `doit -f dodo ARGS` with this interpreter."""
    return [sys.executable, "-m", "doit", "-f", str(dodo), *args]


def variables(**values: object) -> list[str]:
    """doit variables as command-line words: variables(profile=p, jobs=2) is ["profile=p", "jobs=2"].

    A None value is left out.
    """
    return [f"{name}={value}" for name, value in values.items() if value is not None]


def environ(*drop: str, **add: str) -> dict[str, str]:
    """This process's environment without the variables `drop` names (glob patterns: "TINYUKI_*"), plus `add`."""
    env = {k: v for k, v in os.environ.items() if not any(fnmatch.fnmatchcase(k, pattern) for pattern in drop)}
    env.update(add)
    return env


def run_dodo(*args: str, dodo: Path = DODO, cwd: Path = ROOT, env: Mapping[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run doit on `dodo` (the project's dodo.py unless told) in a subprocess; output captured as text."""
    return subprocess.run(dodo_command(*args, dodo=dodo), cwd=cwd, env=None if env is None else dict(env),
                          capture_output=True, text=True, timeout=timeout)


def output(proc: subprocess.CompletedProcess[str], check: bool = False) -> str:
    """What a run printed, stdout then stderr; with `check`, the run must have succeeded."""
    out = proc.stdout + proc.stderr
    if check:
        assert proc.returncode == 0, out
    return out


def cache_outcomes(out: str, stages: list[str], remote: bool = False) -> dict[str, str]:
    """stage -> restored (or, with `remote`, local / remote: where it came from), built (ran and stored),
    or doit's own word (ran / up to date), read from the stages' lines and doit's."""
    result = outcomes(out)
    for task in stages:
        restored = [x for x in out.splitlines() if x.startswith(f"{task}: restored from artifact cache")]
        if restored:
            result[task] = ("remote" if any("from the remote cache" in x for x in restored) else "local") \
                if remote else "restored"
        elif f"{task}: stored in artifact cache" in out:
            result[task] = "built"
    return result


def dodo_ok(*args: str, tail: int | None = None, **kwargs: Any) -> str:
    """`run_dodo` that must succeed; its output (stdout then stderr), of which a failure shows the last `tail` chars."""
    proc = run_dodo(*args, **kwargs)
    out = output(proc)
    assert proc.returncode == 0, out if tail is None else out[-tail:]
    return out


def start_dodo(*args: str, dodo: Path = DODO, cwd: Path = ROOT,
               env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """Start doit on `dodo` without waiting; stdout and stderr come merged, as text, from `.communicate()`."""
    return subprocess.Popen(dodo_command(*args, dodo=dodo), cwd=cwd, env=None if env is None else dict(env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


# ---------------------------------------------------------------- doit's output

def outcomes(out: str) -> dict[str, str]:
    """task -> "ran" or "up to date", from doit's lines (".  task" ran, "-- task" was up to date)."""
    result = {}
    for line in out.splitlines():
        if line.startswith(".  "):
            result[line[3:].strip()] = "ran"
        elif line.startswith("-- "):
            result[line[3:].strip()] = "up to date"
    return result


def ran(out: str) -> list[str]:
    """The tasks doit ran, in the order it ran them."""
    return [line[3:].strip() for line in out.splitlines() if line.startswith(".  ")]


# ---------------------------------------------------------------- stages in this process

def namespace(ctx: Context, names: Sequence[str], default: Sequence[str] = (),
              verbosity: int = 2) -> dict[str, Any]:
    """A doit namespace of the named stages' tasks for `ctx`, configured as dodo.py configures doit."""
    def task(name: str) -> Callable[[], dict[str, Any]]:
        def make() -> dict[str, Any]:
            return task_dict(ctx, PIPELINE[name], PIPELINE)

        make.__name__ = f"task_{name.replace('-', '_')}"
        return make

    config: dict[str, Any] = {"check_file_uptodate": Sha256Checker, "dep_file": str(ctx.paths.db),
                              "backend": "sqlite3", "verbosity": verbosity}
    if default:
        config["default_tasks"] = list(default)
    makers = [task(name) for name in names]
    return {"DOIT_CONFIG": config, **{make.__name__: make for make in makers}}


def run_stages(ctx: Context, names: Sequence[str], args: Sequence[str] = (), *, default: Sequence[str] = (),
               report: Path | None = None, verbosity: int = 2) -> tuple[int, str]:
    """Run `doit run ARGS` over the named stages of tasks.PIPELINE for `ctx`, in this process.

    ARGS are task names and name=value variables, as on doit's command line;
    without task names doit runs `default`. With `report`, doit writes its
    report there: the second value is that report's text ("" without one).
    """
    cmd = ["run", *(["-o", str(report)] if report is not None else []), *args]
    code = DoitMain(ModuleTaskLoader(namespace(ctx, names, default, verbosity))).run(cmd)
    return code, report.read_text() if report is not None and report.exists() else ""
