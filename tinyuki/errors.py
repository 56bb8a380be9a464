"""The one error type of tinyuki, and how doit shows it.

Users see build failures far more often than bugs, so a failure is a message
plus a hint (what to do about it), printed without a Python traceback.
"""

from __future__ import annotations


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
