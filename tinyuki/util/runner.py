"""Running external tools: every command is echoed, failures carry their output.

Like ukify, we print each external command before running it, so a user can
rerun any step by hand. Every subprocess of tinyuki starts here, so that echo,
the "not installed" message, timeouts and killing a command on Ctrl-C behave
the same everywhere:

- `run` runs a command to its end and captures its output (`output` returns it
  as text, `tool_version` its first line);
- `stream` hands the output over as it arrives (a kernel build's progress, a
  VM's serial console, a nested `doit`) and can stop the command early;
- `reading` gives a command's stdout as a file to read from (a decompressor
  feeding tarfile).

Commands stay in tinyuki's process group, so on Ctrl-C the terminal's SIGINT
reaches make and its compilers first (make then deletes its half-written
targets); the command is killed after that, when it passes its timeout, when
`stop` says so, or when the code reading its output fails. Only the command
itself is killed, not processes it left behind in the background.

The subprocesses not started here are bench/ccache.py's Redis server and
bench/webdav.py's nginx, which run beside the builds rather than to an end.
(python-gnupg runs gpg itself.)
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tinyuki.errors import TinyukiError, die

Command = Sequence[str | os.PathLike[str]]
SETUP_HINT = "run scripts/setup.sh to install the build tools"
# The longest stretch without output after which `stop` and the deadline are checked again.
POLL_SECONDS = 0.5
# Output lines shown with a failure; the rest is in the log.
TAIL_LINES = 25


class MissingTool(TinyukiError):
    """The command's program is not installed (or not on PATH)."""


class TimedOut(TinyukiError):
    """The command ran past its timeout and was killed."""


def echo(cmd: Command, cwd: str | os.PathLike[str] | None = None) -> None:
    """Print `+ cmd` (inside `(cd DIR && ...)` when it runs elsewhere) on stderr, as a shell with -x would."""
    where = f"(cd {shlex.quote(str(cwd))} && " if cwd else ""
    print(f"+ {where}{_text(cmd)}{')' if cwd else ''}", file=sys.stderr, flush=True)


def _text(cmd: Command) -> str:
    return shlex.join(str(c) for c in cmd)


def _start(cmd: Command, *, cwd: str | os.PathLike[str] | None, env: Mapping[str, str] | None,
           stdin: int | IO[bytes] | None, stderr: int | IO[bytes], what: str | None,
           missing_hint: str | None) -> subprocess.Popen[bytes]:
    """Popen with stdout piped; a program that is not installed becomes a MissingTool with a hint."""
    try:
        return subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=dict(env) if env is not None else None,
                                stdin=stdin, stdout=subprocess.PIPE, stderr=stderr)
    except FileNotFoundError as e:
        if cwd is not None and not os.path.isdir(cwd):
            raise die(f"{what or 'a step'} runs in {cwd}, which does not exist: {_text(cmd)}") from e
        raise MissingTool(f"{what or 'a step'} needs {cmd[0]!s}, which is not installed",
                          missing_hint or SETUP_HINT) from e


def _line(raw: bytes) -> str:
    """One output line as text: a CRLF ends a line like LF does (serial consoles send CRLF)."""
    return raw.removesuffix(b"\r").decode(errors="replace")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()


@dataclass(frozen=True)
class Streamed:
    """How a streamed command ended."""

    returncode: int | None  # None when tinyuki killed it (timeout or stop)
    timed_out: bool
    stopped: bool  # `stop` asked for the end
    seconds: float  # from start to exit (or to the kill)

    @property
    def cut(self) -> bool:
        """Killed by tinyuki rather than ended on its own."""
        return self.timed_out or self.stopped


def stream(
    cmd: Command,
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    on_output: Callable[[bytes, float], None] | None = None,
    on_line: Callable[[str, float], None] | None = None,
    stop: Callable[[], bool] | None = None,
    log: Path | None = None,
    stdin: int | IO[bytes] | None = None,
    stderr: int | IO[bytes] = subprocess.STDOUT,
    quiet: bool = False,
    what: str | None = None,
    missing_hint: str | None = None,
) -> Streamed:
    """Run `cmd`, handing its output (stdout and stderr merged) to the callbacks as it arrives.

    For each chunk read, in this order: the chunk is appended to `log` (after
    a `$ cmd` line), `on_output(chunk, seconds since start)` gets the raw
    bytes, `on_line(line, seconds)` gets every line it completed (decoded,
    without its LF or CRLF), and then `stop()` is asked whether to end now. An
    unfinished last line goes to `on_line` when the output ends. `stop()` and
    the deadline are also checked every POLL_SECONDS of silence.

    The command is killed at `timeout` seconds or when `stop()` is true; the
    result says which (it is not an error here: a VM that never powers off is
    a verdict, not a crash). stdin is inherited unless given: pass
    subprocess.DEVNULL for a program that would read the terminal.
    """
    if not quiet:
        echo(cmd, cwd)
    start = time.monotonic()
    proc = _start(cmd, cwd=cwd, env=env, stdin=stdin, stderr=stderr, what=what, missing_hint=missing_hint)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending = b""
    timed_out = stopped = False
    with contextlib.ExitStack() as files:
        try:
            out = None
            if log is not None:
                log.parent.mkdir(parents=True, exist_ok=True)
                out = files.enter_context(open(log, "ab"))
                out.write(f"$ {_text(cmd)}\n".encode())
            while True:
                wait = POLL_SECONDS
                if timeout is not None:
                    left = start + timeout - time.monotonic()
                    if left <= 0:
                        timed_out = True
                        break
                    wait = min(left, POLL_SECONDS)
                ready, _, _ = select.select([fd], [], [], wait)
                if not ready:
                    if stop is not None and stop():
                        stopped = True
                        break
                    continue
                chunk = os.read(fd, 65536)
                now = time.monotonic() - start
                if not chunk:
                    break
                if out is not None:
                    out.write(chunk)
                if on_output is not None:
                    on_output(chunk, now)
                if on_line is not None:
                    *complete, pending = (pending + chunk).split(b"\n")
                    for line in complete:
                        on_line(_line(line), now)
                if stop is not None and stop():
                    stopped = True
                    break
            if not (timed_out or stopped):
                # Output ended; the command may still be running (it closed its stdout early).
                try:
                    left = None if timeout is None else max(0.0, start + timeout - time.monotonic())
                    proc.wait(timeout=left)
                except subprocess.TimeoutExpired:
                    timed_out = True
            if timed_out or stopped:
                _kill(proc)
        except BaseException:
            _kill(proc)
            raise
        finally:
            proc.stdout.close()
        if pending and on_line is not None:
            on_line(_line(pending), time.monotonic() - start)
    code = proc.wait()
    return Streamed(returncode=None if timed_out or stopped else code, timed_out=timed_out, stopped=stopped,
                    seconds=time.monotonic() - start)


def run(
    cmd: Command,
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    what: str | None = None,
    hint: str | None = None,
    log: Path | None = None,
    quiet: bool = False,
    input: bytes | None = None,
    timeout: float | None = None,
    ok_codes: Collection[int] | None = (0,),
    merge_stderr: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command to its end, capturing its output; raise a TinyukiError with the tail on failure.

    With `log`, output is appended to that file too. With quiet=False the
    command line is echoed first. An exit status outside `ok_codes` is a
    failure (diffoscope's 1 means "differences found", not an error);
    `ok_codes=None` accepts any and leaves it to the caller. Past `timeout`
    seconds the command is killed and TimedOut raised, so a hung tool cannot
    hang the build. With merge_stderr=False, stderr is kept apart (in the
    result's `stderr`) for commands whose stdout is parsed.
    """
    buf = bytearray()
    with contextlib.ExitStack() as files:
        stdin: IO[bytes] | None = None
        if input is not None:  # from a file, not a pipe: nothing to interleave with reading the output
            stdin = files.enter_context(tempfile.TemporaryFile())
            stdin.write(input)
            stdin.seek(0)
        err: int | IO[bytes] = subprocess.STDOUT
        if not merge_stderr:
            err = files.enter_context(tempfile.TemporaryFile())
        result = stream(cmd, cwd=cwd, env=env, timeout=timeout, on_output=lambda chunk, _at: buf.extend(chunk),
                        log=log, stdin=stdin, stderr=err, quiet=quiet, what=what)
        errors = b""
        if not isinstance(err, int):
            err.seek(0)
            errors = err.read()
    body = _tail(bytes(buf) + errors)
    if result.returncode is None:  # no `stop` here: only the timeout kills
        raise TimedOut(f"{what or 'command'} did not finish within {timeout:g} s and was killed: {_text(cmd)}"
                       + (f"\n    {body}" if body else "") + (f"\n  full log: {log}" if log else ""),
                       hint or "run it by hand to see where it hangs")
    proc = subprocess.CompletedProcess([str(c) for c in cmd], result.returncode, bytes(buf),
                                       None if merge_stderr else errors)
    if ok_codes is not None and proc.returncode not in ok_codes:
        raise die(
            f"{what or 'command'} failed (exit {proc.returncode}): {_text(cmd)}"
            + (f"\n    {body}" if body else "")
            + (f"\n  full log: {log}" if log else ""),
            hint,
        )
    return proc


def _tail(data: bytes, lines: int = TAIL_LINES) -> str:
    return "\n    ".join(data.decode(errors="replace").strip().splitlines()[-lines:])


def output(cmd: Command, **kw: object) -> str:
    """Run quietly and return stdout as text (for version probes and queries)."""
    return run(cmd, quiet=True, **kw).stdout.decode(errors="replace")  # type: ignore[arg-type]


def tool_version(cmd: Command, timeout: float = 60.0) -> str:
    """First line of `tool --version`, or 'missing': recorded in manifests and task keys.

    Any exit status counts (some tools exit 1 after printing their version);
    a tool that hangs on --version is reported as such rather than hanging the pipeline.
    """
    try:
        proc = run(cmd, quiet=True, ok_codes=None, timeout=timeout)
    except MissingTool:
        return "missing"
    except TimedOut:
        return "unknown (--version did not answer)"
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    return lines[0] if lines else "unknown"


@contextlib.contextmanager
def reading(cmd: Command, *, what: str | None = None, hint: str | None = None, quiet: bool = False,
            missing_hint: str | None = None, stdin: int | None = None) -> Iterator[IO[bytes]]:
    """The command's stdout as a file to read from, for a consumer that pulls (tarfile reading xz -dc).

    `stdin` is a file descriptor the command reads (a pipe the caller feeds); by default it reads nothing.

    When the block ends normally, the rest of the output is drained (so the
    command reaches its own end and its integrity checks) and a non-zero exit
    raises with its stderr. When the block raises, the command is killed; if
    it had failed on its own before that, its error is the one raised, being
    the likelier cause (a corrupt stream reads as a truncated tar).
    """
    if not quiet:
        echo(cmd)
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: stderr can never fill up and block the command
        proc = _start(cmd, cwd=None, env=None, stdin=subprocess.DEVNULL if stdin is None else stdin, stderr=err,
                      what=what, missing_hint=missing_hint)
        assert proc.stdout is not None

        def failure() -> TinyukiError:
            err.seek(0)
            text = _tail(err.read(), 10)
            return die(f"{what or 'command'} failed (exit {proc.returncode}): {_text(cmd)}"
                       + (f"\n    {text}" if text else ""), hint)

        try:
            yield proc.stdout
        except BaseException as e:
            # Killed rather than left to die of SIGPIPE, which some tools report as their own failure;
            # a decompressor that had already exited (its EOF ended the read) keeps its exit status.
            _kill(proc)
            proc.stdout.close()
            if isinstance(e, Exception) and proc.returncode > 0:
                raise failure() from e
            raise
        try:
            while proc.stdout.read(65536):
                pass
        finally:
            proc.stdout.close()
        if proc.wait() != 0:
            raise failure()
