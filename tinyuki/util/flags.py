"""One parser for the yes/no switches users type (uki=1, ccache=no, TINYUKI_CCACHE=off).

Every switch accepts the same words, so what works for one works for all;
a switch that also means "decide for me" (ccache=auto) adds only that word.
"""

from __future__ import annotations

from tinyuki.errors import die

YES = ("1", "yes", "true", "on")
NO = ("0", "no", "false", "off")
AUTO = "auto"


def _parse(value: str) -> bool | None:
    v = value.strip().lower()
    if v in YES:
        return True
    if v in NO:
        return False
    return None


def _switch(value: str, name: str, choices: str, examples: str, hint: str | None) -> bool:
    got = _parse(value)
    if got is None:
        raise die(f"{name}={value!r} is not a {choices} value",
                  hint or f"use {examples} (also yes/no, true/false, on/off)")
    return got


def yes_no(value: str | None, name: str, default: bool = False, hint: str | None = None) -> bool:
    """`value` as a boolean; empty or None gives `default`; anything else is a clear error."""
    if value is None or not value.strip():
        return default
    return _switch(value, name, "yes/no", f"{name}=1 or {name}=0", hint)


def yes_no_auto(value: str | None, name: str, hint: str | None = None) -> bool | None:
    """A switch that may also be left to tinyuki: True, False, or None for `auto` (also empty or None)."""
    if value is None or not value.strip() or value.strip().lower() == AUTO:
        return None
    return _switch(value, name, "yes/no/auto", f"{name}=1, {name}=0 or {name}=auto", hint)
