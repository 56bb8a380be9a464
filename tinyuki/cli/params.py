"""Task variables that work both ways: `doit boot disk=FILE` and `doit boot --disk FILE`.

doit's command-line variables (name=value) are global and undocumented, while
task params show up in `doit help TASK`. Declaring each variable as a param too
gives users the help text; the name=value form wins when both are given.
"""

from __future__ import annotations

from typing import Any

from doit import get_var
from doit.doit_cmd import set_var


def param(name: str, help: str, default: str = "") -> dict[str, Any]:
    """A doit task param that documents the variable of the same name."""
    return {"name": name, "long": name, "type": str, "default": default,
            "help": f"{help} (or {name}=VALUE after the task names)"}


def adopt(values: dict[str, str]) -> None:
    """Make params given as --name visible to get_var, unless name=value was also given."""
    for name, value in values.items():
        if value and get_var(name) is None:
            set_var(name, value)
