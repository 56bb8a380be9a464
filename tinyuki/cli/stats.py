"""`doit stats`: what the caches hold and how well they served, in one table.

Two caches make a rebuild fast: the artifact cache (whole stages skipped when
their inputs are unchanged, cache/artifacts) and the compile cache (ccache,
single compiles reused when a stage does run, cache/ccache, optionally backed
by a shared remote storage). Their numbers answer "is the cache working?"
before anyone reaches for a profiler.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tinyuki.cache import artifacts, remote
from tinyuki.cache import compile as compilecache
from tinyuki.cache.compile import CompileSetup
from tinyuki.cache.store import Store
from tinyuki.cli.actions import action
from tinyuki.config.context import Context
from tinyuki.errors import TinyukiError
from tinyuki.util import fs as fsutil
from tinyuki.util.fmt import human_size, markdown_table


def scan_dir(path: Path) -> tuple[int, int]:
    """(files, bytes) under a directory, counting nothing for a missing one."""
    files = size = 0
    if path.is_dir():
        for p in path.rglob("*"):
            if p.is_file() and not p.is_symlink():
                files += 1
                size += p.stat().st_size
    return files, size


def artifact_row(ctx: Context) -> list[str]:
    """The artifact cache: entries and size from its store, hits from this build dir's last run of each stage.

    Each stage that went through the artifact cache recorded in keys/<task>.json
    whether it was restored (a hit) or built (a miss).
    """
    where = ctx.paths.cache / "artifacts"
    try:
        store = Store(where)
        entries, size = str(len(store.list())), human_size(store.disk_usage())
    except OSError:
        files, nbytes = scan_dir(where)
        entries, size = f"{files} files", human_size(nbytes)
    hits, misses = [], []
    for record in sorted((ctx.paths.build / "keys").glob("*.json")):
        try:
            data = fsutil.read_json(record)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "restored" in data:
            (hits if data["restored"] else misses).append(record.stem)
    if not hits and not misses:
        return ["artifacts", str(where), entries, size, "n/a", "n/a", "no stage run in this build dir yet"]
    note = f"last run here: restored {', '.join(hits) or 'nothing'}"
    results = [r.get("result") for r in traffic_records(ctx) if r.get("stage") in hits]
    shown = str(len(hits))
    if "remote-hit" in results:
        shown = f"{len(hits)} (local {results.count('local-hit')}, remote {results.count('remote-hit')})"
    return ["artifacts", str(where), entries, size, shown, str(len(misses)), note]


def traffic_records(ctx: Context) -> list[dict[str, Any]]:
    """What each stage's last run here took from or gave to the caches (tinyuki/cache/artifacts.py)."""
    out = []
    for path in sorted((ctx.paths.logs / artifacts.TRAFFIC_DIR).glob("*.json")):
        try:
            data = fsutil.read_json(path)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("stage"), str):
            out.append(data)
    return out


def remote_row(ctx: Context) -> list[str]:
    """The remote artifact cache: hits, misses and bytes moved by this build dir's last run of each stage."""
    try:
        settings = remote.settings_from(ctx.variables, os.environ)
    except TinyukiError:
        settings = None
    used = [r for r in traffic_records(ctx) if r.get("remote")]
    where = settings.shown if settings is not None else used[-1]["remote"] if used else "not configured"
    if not used:
        hint = "no stage asked it in this build dir yet" if settings else "artifact_remote=URL (README: Caching)"
        return ["artifacts (remote)", where, "", "", "n/a", "n/a", hint]
    hits = [r["stage"] for r in used if r.get("remote_result") == "hit"]
    misses = [r["stage"] for r in used if r.get("remote_result") not in (None, "hit")]
    down = sum(int(r.get("bytes_down", 0)) for r in used)
    up = sum(int(r.get("bytes_up", 0)) for r in used)
    pushed = [r["stage"] for r in used if r.get("pushed")]
    problems = [f"{r['stage']} {r['remote_result']}" for r in used if r.get("remote_result") in
                ("refused", "error", "down")]
    note = (f"downloaded {human_size(down)} ({sum(int(r.get('blobs_down', 0)) for r in used)} blobs), "
            f"uploaded {human_size(up)} ({sum(int(r.get('blobs_up', 0)) for r in used)} blobs)"
            f"; pushed {', '.join(pushed) or 'nothing'}" + (f"; {', '.join(problems)}" if problems else ""))
    return ["artifacts (remote)", where, "", "", str(len(hits)), str(len(misses)), note]


def compile_rows(setup: CompileSetup, report: Path) -> list[list[str]]:
    """ccache's totals for this cache dir, and the last kernel build's share of them."""
    if not setup.ccache:
        return [["compile (ccache)", str(setup.directory), "n/a", "n/a", "n/a", "n/a",
                 "ccache off or not installed"]]
    counters = compilecache.read_counters(setup) or {}
    s = compilecache.summarize(counters)
    rate = f"{100 * s.hit_rate:.1f} % hit rate" if s.hit_rate is not None else "no compiles yet"
    remote = f"; remote {compilecache.redact(setup.remote)}" if setup.remote else ""  # never its credentials
    rows = [["compile (ccache)", str(setup.directory), str(counters.get("files_in_cache", 0)),
             human_size(counters.get("cache_size_kibibyte", 0) * 1024),
             f"{s.hits} (local {s.local_hits}, remote {s.remote_hits})", str(s.misses), rate + remote]]
    try:
        last = fsutil.read_json(report)
    except (OSError, ValueError):
        last = None
    if isinstance(last, dict) and "hits" in last:
        done = last.get("hits", 0) + last.get("misses", 0)
        share = f"{100 * last['hits'] / done:.1f} % hit rate" if done else "no cacheable compiles"
        rows.append(["  last kernel build", str(report), "", "",
                     f"{last['hits']} (local {last.get('local_hits', 0)}, remote {last.get('remote_hits', 0)})",
                     str(last.get("misses", 0)), f"{share}, {last.get('elapsed_s', '?')} s"])
    return rows


def show(ctx: Context) -> None:
    artifacts.finish_storing()  # `doit summary stats`: the last stage's store and record first
    setup = compilecache.for_context(ctx)
    rows = [artifact_row(ctx), remote_row(ctx), *compile_rows(setup, ctx.paths.logs / compilecache.REPORT)]
    print(markdown_table(["cache", "where", "entries", "size", "hits", "misses", "note"], rows))
    print(restored_line(traffic_records(ctx)))


def restored_line(records: list[dict[str, Any]]) -> str:
    """One sentence for a CI job summary: how many cached stages were restored, from where, and how many built."""
    if not records:
        return "no cached stage has run in this build dir yet"
    results = [r.get("result") for r in records]
    local, remote, built = results.count("local-hit"), results.count("remote-hit"), results.count("miss")
    return (f"restored {local + remote} of {len(records)} cached stages in the last run here"
            f" ({local} from the local store, {remote} from the remote), built {built}")


def task(ctx: Context) -> dict[str, Any]:
    return {
        "basename": "stats",
        "actions": [action(lambda: show(ctx))],
        "uptodate": [False],
        "doc": "Print the artifact caches' (local, remote) and the compile cache's size, hits, misses, bytes moved.",
        "verbosity": 2,
    }
