"""The one subprocess runner: echo, failures with their output, timeouts that kill, streaming, exit codes."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinyuki.errors import TinyukiError
from tinyuki.util import runner


def py(body: str) -> list[str]:
    """A command running a few lines of Python: a stand-in for make, QEMU or diffoscope."""
    return [sys.executable, "-c", "import os, sys, time\n" + body]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# ---------------------------------------------------------------- echo

def test_echo_prints_a_command_that_can_be_pasted(capsys: pytest.CaptureFixture[str]) -> None:
    runner.echo(["make", "-C", "/src dir", Path("/o")])
    runner.echo(["ls", "a b"], cwd="/tmp/x y")
    err = capsys.readouterr().err.splitlines()
    assert err == ["+ make -C '/src dir' /o", "+ (cd '/tmp/x y' && ls 'a b')"]


def test_run_echoes_unless_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.run(py("print('hi')")).stdout == b"hi\n"
    assert capsys.readouterr().err.startswith(f"+ {sys.executable} -c ")
    assert runner.output(py("print('hi')")) == "hi\n"
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- run

def test_failure_names_the_command_and_shows_the_output_tail(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "step.log"
    cmd = py("for i in range(40): print(f'line {i}')\nprint('boom', file=sys.stderr)\nsys.exit(3)")
    with pytest.raises(TinyukiError) as e:
        runner.run(cmd, what="the step", hint="fix it", log=log, quiet=True)
    msg = e.value.message
    assert msg.startswith("the step failed (exit 3): ") and sys.executable in msg
    assert "line 39" in msg and "boom" in msg  # stderr is merged into the tail
    assert "line 10\n" not in msg and f"line {40 - runner.TAIL_LINES}\n" not in msg  # only the tail
    assert f"full log: {log}" in msg and e.value.hint == "fix it"
    text = log.read_text()
    assert text.startswith("$ ") and "line 0\nline 1\n" in text and text.endswith("boom\n")


def test_log_is_appended_per_command(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    one, two = ["echo", "one"], [sys.executable, "-c", "print('two')"]
    runner.run(one, log=log, quiet=True)
    runner.run(two, log=log, quiet=True)
    assert log.read_text() == f"$ echo one\none\n$ {shlex.join(two)}\ntwo\n"


def test_missing_tool_has_a_hint() -> None:
    with pytest.raises(runner.MissingTool) as e:
        runner.run(["tinyuki-no-such-tool", "--x"], what="packing", quiet=True)
    assert e.value.message == "packing needs tinyuki-no-such-tool, which is not installed"
    assert "scripts/setup.sh" in (e.value.hint or "")


def test_missing_working_directory_is_not_called_a_missing_tool(tmp_path: Path) -> None:
    with pytest.raises(TinyukiError) as e:
        runner.run(py("pass"), cwd=tmp_path / "nowhere", quiet=True)
    assert not isinstance(e.value, runner.MissingTool) and "does not exist" in e.value.message


def test_timeout_kills_and_raises(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    cmd = py(f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\nprint('started', flush=True)\ntime.sleep(60)")
    start = time.monotonic()
    with pytest.raises(runner.TimedOut) as e:
        runner.run(cmd, what="the slow step", timeout=0.5, quiet=True)
    assert time.monotonic() - start < 10
    assert e.value.message.startswith("the slow step did not finish within 0.5 s and was killed: ")
    assert sys.executable in e.value.message and "started" in e.value.message
    assert gone(int(pidfile.read_text()))


def test_timeout_also_covers_a_command_that_closed_its_output() -> None:
    start = time.monotonic()
    with pytest.raises(runner.TimedOut):
        runner.run(py("os.close(1)\ntime.sleep(60)"), timeout=0.5, quiet=True)
    assert time.monotonic() - start < 10


def test_ok_codes() -> None:
    diff = py("print('differences found')\nsys.exit(1)")
    assert runner.run(diff, ok_codes=(0, 1), quiet=True).returncode == 1
    with pytest.raises(TinyukiError, match=r"failed \(exit 1\)"):
        runner.run(diff, quiet=True)
    with pytest.raises(TinyukiError, match=r"failed \(exit 2\)"):
        runner.run(py("sys.exit(2)"), ok_codes=(0, 1), quiet=True)
    assert runner.run(py("sys.exit(7)"), ok_codes=None, quiet=True).returncode == 7


def test_stderr_apart_and_input() -> None:
    proc = runner.run(py("print(sys.stdin.read().upper())\nprint('warn', file=sys.stderr)"), input=b"abc",
                      merge_stderr=False, quiet=True)
    assert proc.stdout == b"ABC\n" and proc.stderr == b"warn\n"
    with pytest.raises(TinyukiError, match="warn"):  # a failure still shows stderr
        runner.run(py("print('warn', file=sys.stderr)\nsys.exit(1)"), merge_stderr=False, quiet=True)


def test_tool_version() -> None:
    assert runner.tool_version(py("print('tool 1.2\\nCopyright')\nsys.exit(1)")) == "tool 1.2"
    assert runner.tool_version(["tinyuki-no-such-tool", "--version"]) == "missing"
    assert runner.tool_version(py("pass")) == "unknown"
    assert "did not answer" in runner.tool_version(py("time.sleep(60)"), timeout=0.3)


# ---------------------------------------------------------------- stream

def test_stream_hands_over_chunks_then_lines_in_order(tmp_path: Path) -> None:
    events: list[tuple[str, object]] = []
    # Each write waits until the previous chunk was handed over, so no two writes arrive as one chunk.
    ack = tmp_path / "ack"
    cmd = py(f"""
def write(text, n):
    sys.stdout.write(text)
    sys.stdout.flush()
    while not os.path.exists({str(ack)!r} + str(n)):
        time.sleep(0.01)
write('a\\r\\nb', 1)
write('c\\nd\\n', 2)
write('tail', 3)
""")

    def chunk(data: bytes, at: float) -> None:
        events.append(("chunk", data))
        Path(f"{ack}{sum(e[0] == 'chunk' for e in events)}").touch()

    def stop() -> bool:
        events.append(("stop?", None))
        return False

    log = tmp_path / "s.log"
    result = runner.stream(cmd, on_output=chunk, on_line=lambda line, at: events.append(("line", line)), stop=stop,
                           log=log, quiet=True)
    assert result.returncode == 0 and not result.cut
    # ignore the idle polls: chunk, its complete lines, then the stop check; the unfinished line at the end
    seen = [e for i, e in enumerate(events) if not (e[0] == "stop?" and i and events[i - 1][0] == "stop?")]
    assert seen == [("chunk", b"a\r\nb"), ("line", "a"), ("stop?", None),
                    ("chunk", b"c\nd\n"), ("line", "bc"), ("line", "d"), ("stop?", None),
                    ("chunk", b"tail"), ("stop?", None), ("line", "tail")]
    assert log.read_bytes() == f"$ {shlex.join(cmd)}\n".encode() + b"a\r\nbc\nd\ntail"


def test_stream_times_each_line_from_the_start() -> None:
    times: dict[str, float] = {}
    runner.stream(py("print('early', flush=True); time.sleep(0.4); print('late', flush=True)"),
                  on_line=lambda line, at: times.setdefault(line, at), quiet=True)
    assert times["early"] <= times["late"] and times["late"] >= 0.4


def test_stream_stop_ends_the_command_early(tmp_path: Path) -> None:
    lines: list[str] = []
    pidfile = tmp_path / "pid"
    cmd = py(f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\nprint('ready', flush=True)\ntime.sleep(60)")
    result = runner.stream(cmd, on_line=lambda line, at: lines.append(line), stop=lambda: "ready" in lines,
                           quiet=True)
    assert result.stopped and not result.timed_out and result.cut and result.returncode is None
    assert result.seconds < 10 and gone(int(pidfile.read_text()))


def test_stream_timeout_is_a_result_not_an_error() -> None:
    lines: list[str] = []
    result = runner.stream(py("sys.stdout.write('no newline'); sys.stdout.flush(); time.sleep(60)"), timeout=0.5,
                           on_line=lambda line, at: lines.append(line), quiet=True)
    assert result.timed_out and result.returncode is None and 0.5 <= result.seconds < 10
    assert lines == ["no newline"]  # the unfinished line still arrives


def test_stream_kills_the_command_when_a_callback_fails(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    cmd = py(f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\nprint('x', flush=True)\ntime.sleep(60)")

    def bad(line: str, at: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.stream(cmd, on_line=bad, quiet=True)
    assert gone(int(pidfile.read_text()))


def test_stream_passes_env_cwd_and_stdin(tmp_path: Path) -> None:
    out: list[str] = []
    runner.stream(py("print(os.environ.get('TINYUKI_T'), os.getcwd(), repr(sys.stdin.read()))"),
                  env={**os.environ, "TINYUKI_T": "v"}, cwd=tmp_path, stdin=subprocess.DEVNULL,
                  on_line=lambda line, at: out.append(line), quiet=True)
    assert out == [f"v {tmp_path} ''"]


def test_stream_missing_program_uses_the_given_hint() -> None:
    with pytest.raises(runner.MissingTool) as e:
        runner.stream(["tinyuki-no-qemu"], what="booting", missing_hint="install QEMU", quiet=True)
    assert e.value.message == "booting needs tinyuki-no-qemu, which is not installed" and e.value.hint == "install QEMU"


# ---------------------------------------------------------------- reading

def test_reading_yields_the_output_and_checks_the_exit() -> None:
    with runner.reading(py("sys.stdout.write('x' * 200000)"), quiet=True) as f:
        assert f.read(5) == b"xxxxx"  # the rest is drained, not a broken pipe
    with pytest.raises(TinyukiError) as e, \
            runner.reading(py("print('data'); print('corrupt input', file=sys.stderr); sys.exit(1)"),
                           what="xz", hint="fetch again", quiet=True) as f:
        f.read()
    assert e.value.message.startswith("xz failed (exit 1): ") and "corrupt input" in e.value.message
    assert e.value.hint == "fetch again"


def test_reading_prefers_the_command_error_over_the_reader_error() -> None:
    """A corrupt stream ends early and reads as a truncated tar: the decompressor's message is the useful one."""
    with pytest.raises(TinyukiError) as e, \
            runner.reading(py("print('half'); print('data is corrupt', file=sys.stderr); sys.exit(1)"),
                           what="xz", quiet=True) as f:
        f.read()
        raise ValueError("unexpected end of data")
    assert "data is corrupt" in e.value.message and isinstance(e.value.__cause__, ValueError)


def test_reading_stops_a_healthy_command_when_the_reader_gives_up() -> None:
    start = time.monotonic()
    with pytest.raises(ValueError, match="hostile"), \
            runner.reading(py("while True: sys.stdout.write('x' * 65536)"), quiet=True) as f:
        f.read(10)
        raise ValueError("hostile member")
    assert time.monotonic() - start < 5
