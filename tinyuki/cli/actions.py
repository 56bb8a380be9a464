"""How doit shows tinyuki's errors: the message and the hint, never a traceback.

Users see build failures far more often than bugs; a TinyukiError raised by
a stage or a command is an expected outcome (a bad signature, a dropped
config option), so it reaches the console as its own text only.
"""

from __future__ import annotations

import errno
import functools
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from doit.exceptions import TaskFailed

from tinyuki.errors import TinyukiError


class _CleanFailure(TaskFailed):
    """A TaskFailed whose text is only our message: doit prints no traceback."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.traceback = []

    def get_msg(self) -> str:
        return self.message + "\n"


def action(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a doit python-action so a TinyukiError becomes one readable failure.

    doit shows exceptions from actions with their traceback; our errors are
    expected outcomes (a bad signature, a dropped config option), so they are
    turned into a TaskFailed carrying just the message and hint.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
        except TinyukiError as err:
            return _CleanFailure(err.render())
        except KeyboardInterrupt:
            raise
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise  # a bug until proven otherwise: doit shows its traceback
            # A full disk can strike any stage at any write; it is the machine's state, not a bug.
            where = f" while writing {err.filename}" if err.filename else ""
            return _CleanFailure(TinyukiError(f"no space left on the device{where}",
                                              "free some space (or point build_dir= / cache_dir= at a bigger disk),"
                                              " then run the same command again").render())
        return True if result is None else result

    return wrapper


def exit_with(err: TinyukiError, code: int = 2) -> None:
    """Print an error raised while doit loads tasks (for example a bad profile) and exit."""
    print(err.render(), file=sys.stderr)
    raise SystemExit(code)


def _interrupted(signum: int, _frame: object) -> None:
    print(f"\nstopped by {signal.Signals(signum).name}: the stages that finished are recorded; run the same"
          " command again to go on", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)


def stop_like_ctrl_c() -> None:
    """SIGTERM and SIGHUP end a run through doit's own cleanup, so doit records the tasks that finished.

    doit keeps what ran in memory and writes its database when the run ends (its `finally`). A plain
    SIGTERM (`kill`, `timeout`, a stopped CI job, stopping `doit auto`) would skip that: the outputs of
    the finished stages stay on disk while the database still describes the run before, and the next run
    takes a stage whose input changed under it for up to date (a program's new initramfs with its old
    kernel). Raised as SystemExit, the stop unwinds through every `finally` (doit's database, tinyuki's
    temp files and child processes) and ends with the shell's code for the signal, without a traceback.
    Only in the main thread, where Python runs signal handlers.
    """
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _interrupted)
