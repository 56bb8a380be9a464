"""`doit summary` (what plain `doit` ends with): the artifacts' sizes and sha256 prefixes, on every run."""

from __future__ import annotations

from typing import Any

from tinyuki.cli.actions import action
from tinyuki.config.context import Context
from tinyuki.tasks.manifest import MANIFEST, summary
from tinyuki.util.fs import read_json


def task(ctx: Context) -> dict[str, Any]:
    @action
    def show() -> None:
        print(summary(read_json(MANIFEST.at(ctx))))

    return {
        "basename": "summary",
        "doc": "Print the artifacts' sizes and sha256 prefixes (after building the manifest).",
        "actions": [show],
        "task_dep": ["manifest"],
        "uptodate": [False],
        "verbosity": 2,
    }
