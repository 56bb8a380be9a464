"""The artifact cache in the pipeline: restore a stage's outputs by key, or build and store them.

When doit has decided a cached stage must run, its key is computed from its
declaration (tinyuki/cache/keys.py); if the shared cache holds an entry for it,
the outputs are restored (and checked) instead of built; otherwise the stage
builds and its declared outputs are stored. Either way the key is recorded in
build/<p>/keys/<stage>.json for the stages downstream.

TINYUKI_ARTIFACT_CACHE=off builds everything and stores nothing;
=write builds everything and stores the results (for comparing fresh builds,
as `doit repro` does, while still filling the cache); =restore restores and
fails rather than build a cached stage (a fully cached CI job or benchmark that
must compile nothing says so instead of quietly building a kernel).

With a remote artifact cache (artifact_remote=URL, tinyuki/cache/remote.py)
a local miss asks the server next: its entry and blobs are pulled into the
local store, verified, and restored from there. A stage that was built is
pushed (unless the remote is read-only). The server never costs the build: a
miss, an error or a refused entry is a warning, then the stage is built. What
each stage did (local hit, remote hit, miss, bytes moved) is kept in
build/<p>/logs/artifact-cache/<stage>.json for `doit stats`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tinyuki.cache import keys
from tinyuki.cache.remote import Refused, Remote, RemoteError
from tinyuki.cache.remote import for_run as remote_for_run
from tinyuki.cache.store import SCHEMA, CorruptEntry, Store, relocate_out
from tinyuki.config.context import Context
from tinyuki.errors import TinyukiError, die
from tinyuki.stage import Pipeline, Stage
from tinyuki.util.flags import yes_no
from tinyuki.util.fmt import human_size
from tinyuki.util.fs import atomic_write_json


def store_for(ctx: Context) -> Store:
    return Store(ctx.paths.cache / "artifacts")


def mode() -> str:
    """TINYUKI_ARTIFACT_CACHE: on (restore and store), off (neither: any no-value), write (store only),
    or restore (restore only: a miss fails instead of building)."""
    value = os.environ.get("TINYUKI_ARTIFACT_CACHE", "on").strip().lower()
    if value in ("write", "restore"):
        return value
    hint = ("unset it, or set it to off (no cache), write (build and store, never restore) or restore"
            " (restore, never build)")
    return "on" if yes_no(value, "TINYUKI_ARTIFACT_CACHE", default=True, hint=hint) else "off"


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def undeclared(ctx: Context, stage: Stage, entry: dict[str, Any]) -> str | None:
    """Why an entry may not be restored for `stage`: it must hold exactly the stage's declared outputs.

    Whoever can write the shared cache could add a file anywhere in the build
    dir (a script, a config) to an entry: a restore writes what the stage
    declares, and nothing else.
    """
    if entry.get("task") != stage.name:
        return f"it is an entry of {entry.get('task')!r}, not of {stage.name!r}"
    files, trees = set(entry.get("files", {})), set(entry.get("trees", {}))
    want_files, want_trees = {o.path for o in stage.files_of(ctx)}, {o.path for o in stage.trees_of(ctx)}
    if files != want_files or trees != want_trees:
        extra = sorted((files - want_files) | (trees - want_trees))
        missing = sorted((want_files - files) | (want_trees - trees))
        return (f"its outputs are not the stage's declared ones (extra: {', '.join(extra) or 'none'};"
                f" missing: {', '.join(missing) or 'none'})")
    return None


def try_restore(ctx: Context, stage: Stage, key: str, store: Store) -> dict[str, Any] | None:
    """The restored entry, or None (absent, or damaged: then deleted, with a warning)."""
    entry = None
    try:
        entry = store.load(key)
        if entry is None:
            return None
        problem = undeclared(ctx, stage, entry)
        if problem:
            raise CorruptEntry(problem)
        return store.restore(entry, ctx.paths.build, keys.locations(ctx))
    except CorruptEntry as e:
        warn(f"{stage.name}: the artifact cache entry {key[:12]}… is damaged ({e}); deleted it, building instead")
        store.delete(key)
        store.remove_blob_if_bad(entry)
    except OSError as e:
        warn(f"{stage.name}: cannot restore from the artifact cache ({e}); building instead")
    return None


def _not_stored(stage: Stage, store: Store, e: Exception) -> None:
    warn(f"{stage.name}: could not store its outputs in the artifact cache {store.root} ({e})")


def read_outputs(ctx: Context, stage: Stage) -> list[tuple[str, bytes, int]]:
    """The stage's declared files as they are now: (declared path, bytes, mode)."""
    return [(out.path, (path := out.at(ctx)).read_bytes(), path.stat().st_mode & 0o7777) for out in stage.files_of(ctx)]


def save(ctx: Context, stage: Stage, key: str, store: Store, elapsed: float,
         files: list[tuple[str, bytes, int]] | None = None) -> dict[str, Any] | None:
    """Store the stage's declared outputs under its key; a full disk costs the cache entry, never the build.

    `files` are the outputs as read_outputs() read them (for a store that runs after the stage's files may
    have been read by others); by default they are read now.
    """
    locs = keys.locations(ctx)
    entry: dict[str, Any] = {"schema": SCHEMA, "task": stage.name, "key": key, "profile": ctx.name,
                             "created": time.time(), "built_in": round(elapsed, 3), "files": {}, "trees": {}}
    try:
        for rel, data, mode in (files if files is not None else read_outputs(ctx, stage)):
            moved = relocate_out(data, locs)
            sha, size = store.put_bytes(moved if moved is not None else data)
            entry["files"][rel] = {"sha256": sha, "size": size, "mode": mode, "relocated": moved is not None}
        for out in stage.trees_of(ctx):
            entry["trees"][out.path] = store.put_tree(out.at(ctx), locs)
        store.save_entry(entry)
    except OSError as e:
        _not_stored(stage, store, e)
        return None
    return entry


# ---------------------------------------------------------------- storing while the next stage runs
#
# After a program edit, storing the new vmlinux (15 MB: relocated, hashed, written, fsync'd) is a tenth of a
# second the UKI, the disk image and the manifest need not wait for. In a doit run (cli/stages.py turns
# this on) a stage without trees is stored by a thread from the bytes read when it finished, so a later
# stage rewriting a file cannot change what is stored; one store is in flight at a time, and the process
# waits for it before it exits. A stage that stores a tree (kbuild's) is stored before the next stage runs:
# that stage builds in the tree.

_background = False
_in_flight: threading.Thread | None = None


def store_in_background(on: bool) -> None:
    global _background
    _background = on


def finish_storing() -> None:
    """Wait for the store in flight, if any (its messages are printed by then)."""
    global _in_flight
    if _in_flight is not None:
        _in_flight.join()
        _in_flight = None


def _store(ctx: Context, stage: Stage, key: str, store: Store, elapsed: float, remote: Remote | None,
           files: list[tuple[str, bytes, int]] | None, after: Callable[[bool], None]) -> None:
    t = time.monotonic()
    stored = save(ctx, stage, key, store, elapsed, files)
    pushed = False
    if stored is not None:
        print(f"{stage.name}: stored in artifact cache (key {key[:12]}…) in {time.monotonic() - t:.1f}s")
        if remote is not None and not remote.settings.read_only:
            pushed = try_push(stage, stored, store, remote)
    after(pushed)


def _store_in_thread(ctx: Context, stage: Stage, key: str, store: Store, elapsed: float, remote: Remote | None,
                     after: Callable[[bool], None]) -> None:
    global _in_flight
    try:
        files = read_outputs(ctx, stage)
    except OSError as e:
        _not_stored(stage, store, e)
        after(False)
        return
    finish_storing()

    def body() -> None:
        try:
            _store(ctx, stage, key, store, elapsed, remote, files, after)
        except Exception as e:  # a failure in a thread would otherwise be lost: it costs the cache, never the build
            _not_stored(stage, store, e)

    _in_flight = threading.Thread(target=body, name=f"store {stage.name}")
    _in_flight.start()


def describe(entry: dict[str, Any]) -> str:
    files = ", ".join(entry["files"])
    trees = [f"{rel}/ ({meta['files']} files, {human_size(meta['size'])} packed)"
             for rel, meta in entry["trees"].items()]
    return ", ".join(x for x in (files, *trees) if x)


TRAFFIC_DIR = "artifact-cache"


def try_remote(ctx: Context, stage: Stage, key: str, store: Store, remote: Remote) -> tuple[
        dict[str, Any] | None, str]:
    """After a local miss: pull the server's entry into the local store (verified) and restore it.

    (entry or None, what the remote did: hit, miss, refused, error or down); never raises for the server's sake.
    """
    shown = remote.settings.shown
    try:
        pulled = remote.pull(key, store, task=stage.name)
    except Refused as e:
        warn(f"{stage.name}: refused the remote artifact cache's entry {key[:12]}… from {shown}: {e}; building instead")
        return None, "refused"
    except RemoteError as e:
        warn(f"{stage.name}: the remote artifact cache is not usable ({e}); building instead")
        return None, "down" if remote.down else "error"
    except (CorruptEntry, OSError, TinyukiError) as e:
        warn(f"{stage.name}: could not take {key[:12]}… from the remote artifact cache ({remote.say(str(e))});"
             " building instead")
        return None, "error"
    if pulled is None:
        print(f"{stage.name}: not in the remote artifact cache {shown} either (key {key[:12]}…)")
        return None, "miss"
    entry = try_restore(ctx, stage, key, store)
    return (entry, "hit") if entry is not None else (None, "error")


def try_push(stage: Stage, entry: dict[str, Any], store: Store, remote: Remote) -> bool:
    """Upload a stage just built; a server that cannot take it costs a warning."""
    t = time.monotonic()
    try:
        remote.push(entry, store)
    except (RemoteError, OSError, TinyukiError) as e:
        warn(f"{stage.name}: could not push to the remote artifact cache ({remote.say(str(e))})")
        return False
    print(f"{stage.name}: pushed to the remote artifact cache {remote.settings.shown}"
          f"{' (signed)' if remote.settings.signing_key else ''}: {remote.traffic.blobs_up} new blobs,"
          f" {human_size(remote.traffic.up)} in {time.monotonic() - t:.1f}s")
    return True


def traffic_file(ctx: Context, stage: str) -> Path:
    return ctx.paths.logs / TRAFFIC_DIR / f"{stage}.json"


def record_traffic(ctx: Context, stage: Stage, key: str, result: str, remote: Remote | None, remote_result: str | None,
                   pushed: bool, restored_bytes: int) -> None:
    """What this stage's last run took from or gave to the caches, for `doit stats`."""
    traffic = remote.traffic if remote is not None else None
    record = {
        "stage": stage.name, "key": key, "result": result, "restored_bytes": restored_bytes,
        "remote": remote.settings.shown if remote is not None else None,
        "remote_mode": remote.settings.mode if remote is not None else None,
        "remote_result": remote_result, "pushed": pushed,
        "bytes_down": traffic.down if traffic else 0, "bytes_up": traffic.up if traffic else 0,
        "blobs_down": traffic.blobs_down if traffic else 0, "blobs_up": traffic.blobs_up if traffic else 0,
    }
    try:
        atomic_write_json(traffic_file(ctx, stage.name), record)
    except OSError as e:  # statistics are worth a warning, never the build
        warn(f"{stage.name}: could not record the cache statistics ({e})")


def restore_or_build(ctx: Context, stage: Stage, pipeline: Pipeline) -> None:
    """A cached stage's action: restore its outputs by key from the shared cache, or build and store them."""
    how = mode()
    if stage.refresh is not None:
        stage.refresh(ctx)  # what the key hashes besides the declared inputs (tinyuki/stage.py)
    if how == "off":
        # the old key no longer describes the outputs: downstream keys fall back to their hashes
        keys.key_file(ctx, stage.name).unlink(missing_ok=True)
        stage.build(ctx)
        return
    start = time.monotonic()
    key, material = keys.compute(ctx, stage, pipeline)
    store = store_for(ctx)
    remote = remote_for_run(ctx.variables)
    entry = try_restore(ctx, stage, key, store) if how in ("on", "restore") else None
    result, remote_result, pushed = ("local-hit" if entry is not None else "miss"), None, False
    if entry is None and how in ("on", "restore") and remote is not None:
        entry, remote_result = try_remote(ctx, stage, key, store, remote)
        result = "remote-hit" if entry is not None else "miss"
    if entry is None and how == "restore":
        raise die(f"{stage.name}: not in the artifact cache (key {key[:12]}…), and TINYUKI_ARTIFACT_CACHE=restore"
                  " forbids building it", "fill the cache first, or unset TINYUKI_ARTIFACT_CACHE to build")
    if entry is not None:
        origin = (f"; from the remote cache {remote.settings.shown} ({human_size(remote.traffic.down)} downloaded)"
                  if remote is not None and result == "remote-hit" else "")
        print(f"{stage.name}: restored from artifact cache (key {key[:12]}…): {describe(entry)}"
              f" in {time.monotonic() - start:.1f}s; building it took {entry.get('built_in', 0):.1f}s{origin}")
        if entry["trees"]:
            print(f"{stage.name}: the build tree is restored too, relocated to {ctx.paths.build}:"
                  " a later relink is incremental")
    else:
        begin = time.monotonic()
        stage.build(ctx)
        elapsed = time.monotonic() - begin
    keys.record(ctx, stage.name, key, material, restored=entry is not None)
    if entry is not None:
        restored = sum(store.blob_sizes(entry).values())
        record_traffic(ctx, stage, key, result, remote, remote_result, pushed, restored)
        return

    def after(pushed: bool) -> None:
        record_traffic(ctx, stage, key, result, remote, remote_result, pushed, 0)

    if _background and not stage.trees_of(ctx):
        _store_in_thread(ctx, stage, key, store, elapsed, remote, after)
    else:
        finish_storing()
        _store(ctx, stage, key, store, elapsed, remote, None, after)
