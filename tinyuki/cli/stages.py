"""doit tasks derived from the stage declarations (tinyuki/stage.py, tasks/__init__.py).

A stage's task: file_dep is its input files and the files of the stages it
needs; targets are its declared output files; uptodate compares the settings
that reach it (the same ones its cache key covers) and runs its freshness
checks; a cached stage's action restores from the artifact cache or builds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from doit.tools import config_changed

from tinyuki.cache import keys
from tinyuki.cache.artifacts import restore_or_build, store_in_background
from tinyuki.cli.actions import action
from tinyuki.config.context import Context
from tinyuki.stage import Check, Pipeline, Stage, remove_stale


def file_dep(ctx: Context, stage: Stage, pipeline: Pipeline) -> list[str]:
    """The stage's input files and the output files of the stages it needs (never their trees, nor the records
    only their own stage reads).

    A stage that is off for this profile depends on nothing, and nothing depends
    on the files a stage that is off would write.
    """
    if not stage.active(ctx):
        return []
    deps = [str(p) for p in stage.input_files(ctx)]
    deps += [str(o.at(ctx)) for name in stage.needed(ctx) if pipeline[name].active(ctx)
             for o in pipeline[name].files_of(ctx) if o.handed_on]
    return sorted(set(deps))


def _check(check: Check, ctx: Context) -> Callable[[], bool]:
    def fresh() -> bool:
        return check(ctx)

    fresh.__name__ = check.describe()
    return fresh


def off(ctx: Context, stage: Stage) -> None:
    """`doit STAGE` for a stage this profile does not ask for: say so, and remove what it wrote for an earlier
    profile (the manifest stage does the same on every build, tinyuki/stage.py's remove_stale)."""
    for path in remove_stale(ctx, [stage]):
        print(f"{stage.name}: removed {path}, left from a build that had it on")
    print(f"{stage.name}: off for profile {ctx.profile.name} ({stage.doc})")


def drop_foreign(ctx: Context, stage: Stage) -> None:
    """Before a stage writes its outputs: remove those it wrote for another architecture (a bzImage beside a new
    Image), whether this run builds or restores from the cache."""
    for path in remove_stale(ctx, [stage]):
        print(f"{stage.name}: removed {path}, left from a build for another [kernel] arch")


def task_dict(ctx: Context, stage: Stage, pipeline: Pipeline) -> dict[str, Any]:
    """One stage as a doit task; a stage that is off for this profile only says so (no targets)."""
    active = stage.active(ctx)
    if not active:
        def run() -> None:
            off(ctx, stage)
    elif stage.cache:
        def run() -> None:
            drop_foreign(ctx, stage)
            store_in_background(True)  # the next stage runs while this one's outputs are stored
            restore_or_build(ctx, stage, pipeline)
    else:
        def run() -> None:
            drop_foreign(ctx, stage)
            if stage.refresh is not None:
                stage.refresh(ctx)
            stage.build(ctx)

    return {
        "basename": stage.name,
        "doc": stage.doc,
        "actions": [action(run)],
        "file_dep": file_dep(ctx, stage, pipeline),
        "targets": [str(o.at(ctx)) for o in stage.files_of(ctx)] if active else [],
        # one config_changed per task: doit keeps a single saved value for it
        "uptodate": [config_changed(keys.staleness(ctx, stage)),
                     *(_check(c, ctx) for c in stage.checks if active)],
        "clean": True,
        "verbosity": 2,
    }
