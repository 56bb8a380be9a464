"""`doit bench`: the benchmarks (python -m bench) run from doit, arguments passed through."""

from __future__ import annotations

import shlex
import sys
from typing import Any

from doit import get_var

from tinyuki.config.context import Context


def task(ctx: Context) -> dict[str, Any]:
    return {
        "basename": "bench",
        "doc": 'Run the benchmarks (python -m bench); bench="boot --runs 3" passes arguments to it.',
        "actions": [[sys.executable, "-m", "bench", *shlex.split(get_var("bench", "") or "")]],
        "uptodate": [False],
        "verbosity": 2,
    }
