"""`doit cache` and `doit cache-prune`: what the shared artifact cache holds, and keeping it bounded."""

from __future__ import annotations

import time
from typing import Any

from doit import get_var

from tinyuki.cache import trees
from tinyuki.cache.artifacts import describe, finish_storing, store_for
from tinyuki.cache.store import GIB, Store
from tinyuki.cli.actions import action
from tinyuki.config.context import Context
from tinyuki.errors import die
from tinyuki.util.fmt import age, human_size, text_table
from tinyuki.util.fs import sweep

DEFAULT_KEEP_GIB = 5.0


def listing(store: Store, now: float | None = None) -> str:
    now = time.time() if now is None else now
    rows = []
    for key, entry, st in store.list():
        used = age(now - st.st_mtime)
        if entry is None:
            rows.append(("?", key[:12] + "…", "", used, "(damaged entry)"))
            continue
        size = sum(store.blob_sizes(entry).values())
        rows.append((entry["task"], key[:12] + "…", human_size(size), used, describe(entry)))
    count = len(rows)
    table = text_table(("task", "key", "size", "last used", "outputs"), rows, align_right=(2, 3), rule=False)
    return f"{table}\n{count} entr{'y' if count == 1 else 'ies'}, {human_size(store.disk_usage())} in {store.root}"


def list_task(ctx: Context) -> dict[str, Any]:
    @action
    def show() -> None:
        finish_storing()  # a store still in flight from the stages run before it
        print(listing(store_for(ctx)))

    return {
        "basename": "cache",
        "actions": [show],
        "uptodate": [False],
        "doc": "List the artifact cache: task, key, size and last use of each entry, and the total.",
        "verbosity": 2,
    }


def keep_gib(param: float) -> float:
    """`keep=N` after the task name (a doit variable) wins over `--keep N`."""
    value = get_var("keep", None)
    if value is None:
        return param
    try:
        return float(value)
    except ValueError:
        raise die(f"keep={value!r} is not a number of GiB", "for example: doit cache-prune keep=2") from None


def prune_task(ctx: Context) -> dict[str, Any]:
    @action
    def prune(keep: float) -> None:
        finish_storing()
        keep = keep_gib(keep)
        if keep < 0:
            raise die(f"keep={keep} is negative", "give the GiB to keep, for example keep=2")
        store = store_for(ctx)
        result = store.prune(int(keep * GIB))
        print(f"cache-prune: kept {human_size(result['kept_bytes'])} (limit {keep:g} GiB), removed "
              f"{result['removed_entries']} entries and {result['removed_blobs']} blobs "
              f"({human_size(result['freed_bytes'])}); {human_size(store.disk_usage())} left")
        # the source trees share the budget: what the artifact cache left of it
        kept = trees.prune(ctx.paths.trees, max(0, int(keep * GIB) - result["kept_bytes"]))
        stale = sweep(ctx.paths.store, "*/.*.tmp") if ctx.paths.store.is_dir() else []
        print(f"cache-prune: trees: kept {human_size(kept['kept_bytes'])}, removed {kept['removed_trees']} trees"
              f" ({human_size(kept['freed_bytes'])}) and {kept['removed_leftovers'] + len(stale)} leftovers of"
              " crashed runs")

    return {
        "basename": "cache-prune",
        "actions": [prune],
        "params": [{"name": "keep", "long": "keep", "type": float, "default": DEFAULT_KEEP_GIB,
                    "help": f"GiB of the most recently used entries to keep (default {DEFAULT_KEEP_GIB:g};"
                            " also `doit cache-prune keep=N`)"}],
        "uptodate": [False],
        "doc": "Shrink the artifact cache and the source trees to the most recently used: keep=GiB (default 5).",
        "verbosity": 2,
    }
