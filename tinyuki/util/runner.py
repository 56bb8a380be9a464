"""Running external tools: every command is echoed, failures carry their output.

Like ukify, we print each external command before running it, so a user can
rerun any step by hand.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tinyuki.errors import die


def echo(cmd: Sequence[str | os.PathLike[str]], cwd: str | os.PathLike[str] | None = None) -> None:
    where = f"(cd {shlex.quote(str(cwd))} && " if cwd else ""
    text = shlex.join(str(c) for c in cmd)
    print(f"+ {where}{text}{')' if cwd else ''}", file=sys.stderr, flush=True)


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    what: str | None = None,
    hint: str | None = None,
    log: Path | None = None,
    quiet: bool = False,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command, capturing its output; raise a TinyukiError with the tail on failure.

    With `log`, output is appended to that file too. With quiet=False the
    command line is echoed first.
    """
    if not quiet:
        echo(cmd, cwd)
    try:
        proc = subprocess.run(
            [str(c) for c in cmd], cwd=cwd, env=dict(env) if env is not None else None,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, input=input, check=False,
        )
    except FileNotFoundError as e:
        raise die(f"{what or 'a step'} needs {cmd[0]!s}, which is not installed",
                  "run the README's setup command (scripts/setup) to install the build tools") from e
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as f:
            f.write(b"$ " + shlex.join(str(c) for c in cmd).encode() + b"\n" + proc.stdout)
    if proc.returncode != 0:
        tail = proc.stdout.decode(errors="replace").strip().splitlines()[-25:]
        body = "\n    ".join(tail)
        raise die(
            f"{what or 'command'} failed (exit {proc.returncode}): {shlex.join(str(c) for c in cmd)}"
            + (f"\n    {body}" if body else "")
            + (f"\n  full log: {log}" if log else ""),
            hint,
        )
    return proc


def output(cmd: Sequence[str], **kw: object) -> str:
    """Run quietly and return stdout as text (for version probes and queries)."""
    return run(cmd, quiet=True, **kw).stdout.decode(errors="replace")  # type: ignore[arg-type]


def tool_version(cmd: Sequence[str]) -> str:
    """First line of `tool --version`, or 'missing': recorded in manifests and task keys."""
    try:
        proc = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    except FileNotFoundError:
        return "missing"
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    return lines[0] if lines else "unknown"
