"""The one error type of tinyuki, and how doit shows it.

Users see build failures far more often than bugs, so a failure is a message
plus a hint (what to do about it), printed without a Python traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from doit.exceptions import TaskFailed


class TinyukiError(Exception):
    """A failure the user can act on: what went wrong, where, and how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def __str__(self) -> str:
        return self.render()


def die(message: str, hint: str | None = None) -> TinyukiError:
    """Build the error to raise; `raise die(...)` keeps call sites one line."""
    return TinyukiError(message, hint)


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
        return True if result is None else result

    return wrapper


def exit_with(err: TinyukiError, code: int = 2) -> None:
    """Print an error raised while doit loads tasks (for example a bad profile) and exit."""
    print(err.render(), file=sys.stderr)
    raise SystemExit(code)
