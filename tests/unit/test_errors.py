"""Errors carry a message and a hint, and doit actions show them without a traceback."""

from __future__ import annotations

from doit.exceptions import TaskFailed

from tinyuki.cli.actions import action
from tinyuki.errors import TinyukiError, die


def test_render_has_message_and_hint() -> None:
    e = die("the tarball is gone", "run doit fetch again")
    assert e.render() == "error: the tarball is gone\n  hint: run doit fetch again"
    assert str(TinyukiError("x")) == "error: x"


def test_action_turns_error_into_clean_failure() -> None:
    @action
    def step() -> None:
        raise die("bad thing at /x", "do y")

    result = step()
    assert isinstance(result, TaskFailed)
    assert result.get_msg() == "error: bad thing at /x\n  hint: do y\n"
    assert "Traceback" not in str(result)


def test_action_passes_success_through() -> None:
    assert action(lambda: None)() is True
    assert action(lambda: {"k": 1})() == {"k": 1}
