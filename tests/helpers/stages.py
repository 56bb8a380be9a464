"""The pipeline's stages for tests: their doit tasks, builds and outputs, looked up by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinyuki.cli.stages import task_dict
from tinyuki.config.context import Context
from tinyuki.records import Tree
from tinyuki.tasks import PIPELINE

# The stages the artifact cache stores, in pipeline order.
CACHED = [s.name for s in PIPELINE if s.cache]


def task(ctx: Context, name: str) -> dict[str, Any]:
    """The doit task dict of one stage, as dodo.py makes it."""
    return task_dict(ctx, PIPELINE[name], PIPELINE)


def build(ctx: Context, name: str) -> None:
    """Run one stage's build function (no artifact cache, no doit)."""
    PIPELINE[name].build(ctx)


def out(ctx: Context, name: str) -> Path:
    """An output by its manifest name or its path in the build dir (kernel.config, init, tree.json, ...)."""
    return PIPELINE.path(ctx, name)


def write_tree_record(build: Path, tree: Path) -> None:
    """tree.json as the patch stage writes it, naming `tree` (an unpatched tree)."""
    Tree(tree=str(tree), source_sha256="0" * 64, patches_sha256=None, patches=[]).save(build)
