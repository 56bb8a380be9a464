"""What the benchmarks share: the `doit` they time, timing a command, and kbuild's own make."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tinyuki.cache import compile as compilecache
from tinyuki.config.context import ROOT, Context
from tinyuki.toolchain.kbuild import make_cmd, make_env
from tinyuki.util import runner


def doit_cmd(*args: str | os.PathLike[str], root: Path = ROOT) -> list[str]:
    """`doit ARGS` on the project's dodo.py, with this interpreter (the venv that has doit)."""
    return [sys.executable, "-m", "doit", "-f", str(root / "dodo.py"), *(str(a) for a in args)]


def timed(cmd: Sequence[str | os.PathLike[str]], *, cwd: Path = ROOT, env: Mapping[str, str] | None = None,
          log: Path | None = None, what: str | None = None) -> tuple[float, str]:
    """Run a command through the runner (echoed; a failure is a TinyukiError with its output's tail).

    Returns the wall-clock seconds it took and its output (stdout and stderr).
    The runner collects the output in memory (and appends it to `log`), which
    costs nothing measurable against the seconds a `doit` or `make` takes.
    """
    start = time.monotonic()
    proc = runner.run(cmd, cwd=cwd, env=env, log=log, what=what)
    return time.monotonic() - start, proc.stdout.decode(errors="replace")


def kbuild_make(ctx: Context, tree: Path, *targets: str) -> tuple[list[str], dict[str, str]]:
    """The make command and environment the kernel stage itself uses (same CC, so kbuild sees no change)."""
    compiling = compilecache.for_context(ctx)
    cmd = make_cmd(tree, ctx.paths.kbuild, *targets, jobs=compiling.jobs(ctx.jobs),
                   make_vars=compiling.kbuild_vars(ctx.arch))
    return cmd, compiling.environ(make_env(ctx.profile.kernel, tree, ctx.paths.kbuild))


def serving(proc: subprocess.Popen[bytes], port: int, seconds: float = 10.0) -> bool:
    """Wait until a server just started answers on 127.0.0.1:port; False (after killing it) if it never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    return False
