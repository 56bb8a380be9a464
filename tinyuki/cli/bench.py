"""`doit bench`: the benchmarks (python -m bench) run from doit, arguments passed through.

The benchmarks measure tinyuki itself and live in its clone (bench/), not in the installed package:
in a user's project the task says where to run them instead of failing on a missing module.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

from doit import get_var

from tinyuki.cli.actions import action
from tinyuki.config.context import Context
from tinyuki.errors import die
from tinyuki.resources import CLONE


def task(ctx: Context) -> dict[str, Any]:
    if CLONE is not None and (CLONE / "bench" / "__main__.py").is_file():
        actions: list[Any] = [[sys.executable, "-m", "bench", *shlex.split(get_var("bench", "") or "")]]
    else:
        @action
        def elsewhere() -> None:
            raise die("doit bench: the benchmarks come with tinyuki's clone (bench/), not with the installed package",
                      "run them in a clone of tinyuki: scripts/build.sh bench")

        actions = [elsewhere]
    return {
        "basename": "bench",
        "doc": 'Run the benchmarks (python -m bench); bench="boot --runs 3" passes arguments to it.',
        "actions": actions,
        "uptodate": [False],
        "verbosity": 2,
    }
