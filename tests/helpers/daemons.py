"""Real servers for tests (redis-server, distccd): a free port, started, waited for, always stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest


def processes() -> Iterator[tuple[int, list[str], bool]]:
    """(pid, argv, is a zombie) of every process this user can see, read from /proc."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone meanwhile
        yield int(pid), argv, state == "Z"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_connect(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@contextmanager
def running(cmd: Sequence[str], log: Path, ready: Callable[[], bool], timeout: float = 10) -> Iterator[
        subprocess.Popen[bytes]]:
    """Run `cmd` with its output in `log` until the block ends; wait until `ready()` says it serves.

    An OSError from `ready` counts as not ready yet. The test fails, showing the
    end of the log, if the server exits or is not ready within `timeout` seconds.
    """
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not _ready(ready):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{Path(cmd[0]).name} did not start: {log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.05)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _ready(ready: Callable[[], bool]) -> bool:
    try:
        return ready()
    except OSError:
        return False
