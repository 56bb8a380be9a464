"""The artifact cache in the pipeline: restore a stage's outputs by key, or build and store them.

When doit has decided a cached stage must run, its key is computed from its
declaration (tinyuki/cache/keys.py); if the shared cache holds an entry for it,
the outputs are restored (and checked) instead of built; otherwise the stage
builds and its declared outputs are stored. Either way the key is recorded in
build/<p>/keys/<stage>.json for the stages downstream.

TINYUKI_ARTIFACT_CACHE=off builds everything and stores nothing;
=write builds everything and stores the results (for comparing fresh builds,
as `doit repro` does, while still filling the cache).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from tinyuki.cache import keys
from tinyuki.cache.store import SCHEMA, CorruptEntry, Store, relocate_out
from tinyuki.config.context import Context
from tinyuki.stage import Pipeline, Stage
from tinyuki.util.flags import yes_no
from tinyuki.util.fmt import human_size


def store_for(ctx: Context) -> Store:
    return Store(ctx.paths.cache / "artifacts")


def mode() -> str:
    """TINYUKI_ARTIFACT_CACHE: on (restore and store), off (neither: any no-value), or write (store only)."""
    value = os.environ.get("TINYUKI_ARTIFACT_CACHE", "on").strip().lower()
    if value == "write":
        return value
    hint = "unset it, or set it to off (no cache) or write (build and store, never restore)"
    return "on" if yes_no(value, "TINYUKI_ARTIFACT_CACHE", default=True, hint=hint) else "off"


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def try_restore(ctx: Context, stage: Stage, key: str, store: Store) -> dict[str, Any] | None:
    """The restored entry, or None (absent, or damaged: then deleted, with a warning)."""
    entry = None
    try:
        entry = store.load(key)
        if entry is None:
            return None
        return store.restore(entry, ctx.paths.build, keys.locations(ctx))
    except CorruptEntry as e:
        warn(f"{stage.name}: the artifact cache entry {key[:12]}… is damaged ({e}); deleted it, building instead")
        store.delete(key)
        store.remove_blob_if_bad(entry)
    except OSError as e:
        warn(f"{stage.name}: cannot restore from the artifact cache ({e}); building instead")
    return None


def save(ctx: Context, stage: Stage, key: str, store: Store, elapsed: float) -> dict[str, Any] | None:
    """Store the stage's declared outputs under its key; a full disk costs the cache entry, never the build."""
    locs = keys.locations(ctx)
    entry: dict[str, Any] = {"schema": SCHEMA, "task": stage.name, "key": key, "profile": ctx.name,
                             "created": time.time(), "built_in": round(elapsed, 3), "files": {}, "trees": {}}
    try:
        for out in stage.files:
            path = out.at(ctx)
            data = path.read_bytes()
            moved = relocate_out(data, locs)
            sha, size = store.put_bytes(moved if moved is not None else data)
            entry["files"][out.path] = {
                "sha256": sha, "size": size, "mode": path.stat().st_mode & 0o7777, "relocated": moved is not None}
        for out in stage.trees:
            entry["trees"][out.path] = store.put_tree(out.at(ctx), locs)
        store.save_entry(entry)
    except OSError as e:
        warn(f"{stage.name}: could not store its outputs in the artifact cache {store.root} ({e})")
        return None
    return entry


def describe(entry: dict[str, Any]) -> str:
    files = ", ".join(entry["files"])
    trees = [f"{rel}/ ({meta['files']} files, {human_size(meta['size'])} packed)"
             for rel, meta in entry["trees"].items()]
    return ", ".join(x for x in (files, *trees) if x)


def restore_or_build(ctx: Context, stage: Stage, pipeline: Pipeline) -> None:
    """A cached stage's action: restore its outputs by key from the shared cache, or build and store them."""
    how = mode()
    if how == "off":
        # the old key no longer describes the outputs: downstream keys fall back to their hashes
        keys.key_file(ctx, stage.name).unlink(missing_ok=True)
        stage.build(ctx)
        return
    start = time.monotonic()
    key, material = keys.compute(ctx, stage, pipeline)
    store = store_for(ctx)
    entry = try_restore(ctx, stage, key, store) if how == "on" else None
    if entry is not None:
        print(f"{stage.name}: restored from artifact cache (key {key[:12]}…): {describe(entry)}"
              f" in {time.monotonic() - start:.1f}s; building it took {entry.get('built_in', 0):.1f}s")
        if entry["trees"]:
            print(f"{stage.name}: the build tree is restored too, relocated to {ctx.paths.build}:"
                  " a later relink is incremental")
    else:
        begin = time.monotonic()
        stage.build(ctx)
        elapsed = time.monotonic() - begin
        t = time.monotonic()
        stored = save(ctx, stage, key, store, elapsed)
        if stored is not None:
            print(f"{stage.name}: stored in artifact cache (key {key[:12]}…) in {time.monotonic() - t:.1f}s")
    keys.record(ctx, stage.name, key, material, restored=entry is not None)
