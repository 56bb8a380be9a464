"""The artifact cache in the pipeline: restore-or-build for each expensive task, `doit cache`, `doit cache-prune`.

A stage wraps its build function with `cached(ctx, "kernel", build)`. When doit
has decided the task must run, the wrapper computes the task's key; if the
shared cache holds an entry for it, the outputs are restored (and checked)
instead of built; otherwise the task builds and its outputs are stored. Either
way the key is recorded in build/<p>/keys/<task>.json for the tasks downstream.

TINYUKI_ARTIFACT_CACHE=off builds everything and stores nothing;
=write builds everything and stores the results (for comparing fresh builds,
as `doit repro` does, while still filling the cache).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from doit import get_var

from tasks import taskkey
from tasks.artifacts import GIB, SCHEMA, CorruptEntry, Store, age, human, relocate_out
from tasks.context import Context
from tasks.errors import action, die

MODES = ("on", "off", "write")
DEFAULT_KEEP_GIB = 5.0


def store_for(ctx: Context) -> Store:
    return Store(ctx.paths.cache / "artifacts")


def mode() -> str:
    value = os.environ.get("TINYUKI_ARTIFACT_CACHE", "on").strip().lower() or "on"
    if value not in MODES:
        raise die(f"TINYUKI_ARTIFACT_CACHE={value!r} is not one of {', '.join(MODES)}",
                  "unset it, or set it to off (no cache) or write (build and store, never restore)")
    return value


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def try_restore(ctx: Context, task: str, key: str, store: Store) -> dict[str, Any] | None:
    """The restored entry, or None (absent, or damaged: then deleted, with a warning)."""
    entry = None
    try:
        entry = store.load(key)
        if entry is None:
            return None
        return store.restore(entry, ctx.paths.build, taskkey.locations(ctx))
    except CorruptEntry as e:
        warn(f"{task}: the artifact cache entry {key[:12]}… is damaged ({e}); deleted it, building instead")
        store.delete(key)
        store.remove_blob_if_bad(entry)
    except OSError as e:
        warn(f"{task}: cannot restore from the artifact cache ({e}); building instead")
    return None


def save(ctx: Context, task: str, key: str, store: Store, elapsed: float) -> dict[str, Any] | None:
    """Store the task's outputs under its key; a full disk costs the cache entry, never the build."""
    outputs = taskkey.OUTPUTS[task](ctx)
    locs = taskkey.locations(ctx)
    build = ctx.paths.build
    entry: dict[str, Any] = {"schema": SCHEMA, "task": task, "key": key, "profile": ctx.name,
                             "created": time.time(), "built_in": round(elapsed, 3), "files": {}, "trees": {}}
    try:
        for path in outputs.files:
            data = path.read_bytes()
            moved = relocate_out(data, locs)
            sha, size = store.put_bytes(moved if moved is not None else data)
            entry["files"][str(path.relative_to(build))] = {
                "sha256": sha, "size": size, "mode": path.stat().st_mode & 0o7777, "relocated": moved is not None}
        for tree in outputs.trees:
            entry["trees"][str(tree.relative_to(build))] = store.put_tree(tree, locs)
        store.save_entry(entry)
    except OSError as e:
        warn(f"{task}: could not store its outputs in the artifact cache {store.root} ({e})")
        return None
    return entry


def describe(entry: dict[str, Any]) -> str:
    files = ", ".join(entry["files"])
    trees = [f"{rel}/ ({meta['files']} files, {human(meta['size'])} packed)" for rel, meta in entry["trees"].items()]
    return ", ".join(x for x in (files, *trees) if x)


def cached(ctx: Context, task: str, build: Callable[[], Any]) -> Callable[[], Any]:
    """The task's doit action: restore its outputs by key from the shared cache, or build and store them."""

    @action
    def run() -> None:
        how = mode()
        if how == "off":
            # the old key no longer describes the outputs: downstream keys fall back to their hashes
            taskkey.key_file(ctx, task).unlink(missing_ok=True)
            build()
            return
        start = time.monotonic()
        key, material = taskkey.compute(ctx, task)
        store = store_for(ctx)
        entry = try_restore(ctx, task, key, store) if how == "on" else None
        if entry is not None:
            print(f"{task}: restored from artifact cache (key {key[:12]}…): {describe(entry)}"
                  f" in {time.monotonic() - start:.1f}s; building it took {entry.get('built_in', 0):.1f}s")
            if entry["trees"]:
                print(f"{task}: the build tree is restored too, relocated to {ctx.paths.build}:"
                      " a later relink is incremental")
        else:
            begin = time.monotonic()
            build()
            elapsed = time.monotonic() - begin
            t = time.monotonic()
            stored = save(ctx, task, key, store, elapsed)
            if stored is not None:
                print(f"{task}: stored in artifact cache (key {key[:12]}…) in {time.monotonic() - t:.1f}s")
        taskkey.record(ctx, task, key, material, restored=entry is not None)

    return run


# ---------------------------------------------------------------- doit cache, doit cache-prune

def listing(store: Store, now: float | None = None) -> str:
    now = time.time() if now is None else now
    rows = [f"{'task':<10} {'key':<14} {'size':>10} {'last used':>10}  outputs"]
    for key, entry, st in store.list():
        if entry is None:
            rows.append(f"{'?':<10} {key[:12] + '…':<14} {'':>10} {age(now - st.st_mtime):>10}  (damaged entry)")
            continue
        size = sum(store.blob_sizes(entry).values())
        rows.append(f"{entry['task']:<10} {key[:12] + '…':<14} {human(size):>10} {age(now - st.st_mtime):>10}"
                    f"  {describe(entry)}")
    count = len(rows) - 1
    rows.append(f"{count} entr{'y' if count == 1 else 'ies'}, {human(store.disk_usage())} in {store.root}")
    return "\n".join(rows)


def list_task(ctx: Context) -> dict[str, Any]:
    @action
    def show() -> None:
        print(listing(store_for(ctx)))

    return {
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
        keep = keep_gib(keep)
        if keep < 0:
            raise die(f"keep={keep} is negative", "give the GiB to keep, for example keep=2")
        store = store_for(ctx)
        result = store.prune(int(keep * GIB))
        print(f"cache-prune: kept {human(result['kept_bytes'])} (limit {keep:g} GiB), removed "
              f"{result['removed_entries']} entries and {result['removed_blobs']} blobs "
              f"({human(result['freed_bytes'])}); {human(store.disk_usage())} left")

    return {
        "basename": "cache-prune",
        "actions": [prune],
        "params": [{"name": "keep", "long": "keep", "type": float, "default": DEFAULT_KEEP_GIB,
                    "help": f"GiB of the most recently used entries to keep (default {DEFAULT_KEEP_GIB:g};"
                            " also `doit cache-prune keep=N`)"}],
        "uptodate": [False],
        "doc": "Shrink the artifact cache to the most recently used entries: keep=GiB (default 5).",
        "verbosity": 2,
    }
