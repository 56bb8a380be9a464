"""The exit code of the doit process, for commands whose result is a number (`doit boot`).

doit ends with 1 whenever a task failed, whatever the failure. `doit boot`
passes on the booted program's exit status (and its own codes for a panic, a
hang, a missing marker: tinyuki/vm/qemu.py), so a script or CI job can branch
on it. doit offers no hook for that; once doit has finished (its state saved,
its report printed), an atexit handler ends the process with the wanted code.

Only in a process that doit's command line started: run in-process (a test
calling the action), nothing is changed.
"""

from __future__ import annotations

import atexit
import os
import sys

_wanted: list[int] = []


def started_by_doit() -> bool:
    """Whether this process is the `doit` command (the console script, or `python -m doit`)."""
    main = os.path.basename(sys.argv[0]) if sys.argv else ""
    return main == "doit" or sys.argv[0].endswith(os.path.join("doit", "__main__.py"))


def _finish() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_wanted[-1])


def exit_with_code(code: int) -> None:
    """End the doit process with `code` once doit is done; the last call wins."""
    if not started_by_doit():
        return
    if not _wanted:
        atexit.register(_finish)
    _wanted.append(code)
