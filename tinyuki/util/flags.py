"""One parser for the yes/no switches users type (uki=1, ccache=no, TINYUKI_CCACHE=off)."""

from __future__ import annotations

from tinyuki.errors import die

YES = ("1", "yes", "true", "on")
NO = ("0", "no", "false", "off")


def yes_no(value: str | None, name: str, default: bool = False, hint: str | None = None) -> bool:
    """`value` as a boolean; empty or None gives `default`; anything else is a clear error."""
    if value is None or not value.strip():
        return default
    v = value.strip().lower()
    if v in YES:
        return True
    if v in NO:
        return False
    raise die(f"{name}={value!r} is not a yes/no value",
              hint or f"use {name}=1 or {name}=0 (also yes/no, true/false, on/off)")
