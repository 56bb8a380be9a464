"""`doit stats`: what the caches hold and how well they served, in one table.

Two caches make a rebuild fast: the artifact cache (whole stages skipped when
their inputs are unchanged, cache/artifacts) and the compile cache (ccache,
single compiles reused when a stage does run, cache/ccache, optionally backed
by a shared remote storage). Their numbers answer "is the cache working?"
before anyone reaches for a profiler.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks import compilecache, fsutil
from tasks.compilecache import CompileSetup
from tasks.context import Context
from tasks.errors import TinyukiError, action
from tasks.runner import output

# Written by the kernel stage under logs/: the compile cache's counters for that one build.
COMPILE_CACHE_REPORT = "kernel-compilecache.json"


def read_ccache_counters(setup: CompileSetup, environ: Mapping[str, str] | None = None) -> dict[str, int] | None:
    """ccache's cumulative counters for the setup's CCACHE_DIR; None when ccache is not in use."""
    if not setup.ccache:
        return None
    base = os.environ if environ is None else environ
    env = {**base, **compilecache.ccache_environ(setup.directory, base)}
    try:
        text = output([setup.ccache, "--print-stats"], env=env)
    except TinyukiError:
        return None
    return compilecache.parse_print_stats(text)


def report_compile_cache(setup: CompileSetup, before: dict[str, int] | None, report: Path, elapsed: float) -> None:
    """Print one line about this build's compile cache use and keep its counters for `doit stats` and benches."""
    after = read_ccache_counters(setup)
    counters = compilecache.delta(before or {}, after) if after is not None else {}
    summary = compilecache.summarize(counters)
    data: dict[str, Any] = {"setup": setup.describe(), "elapsed_s": round(elapsed, 1), "counters": counters,
                            "hits": summary.hits, "misses": summary.misses, "local_hits": summary.local_hits,
                            "remote_hits": summary.remote_hits, "uncacheable": summary.uncacheable}
    fsutil.atomic_write_json(report, data)
    if after is not None:
        print(f"ccache: {summary.line()}")


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, aligned: readable in a terminal and pastable into an issue."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


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
        from tasks.artifacts import Store

        store = Store(where)
        entries, size = str(len(store.list())), human_size(store.disk_usage())
    except (ImportError, AttributeError, OSError, TypeError):
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
    return ["artifacts", str(where), entries, size, str(len(hits)), str(len(misses)), note]


def compile_rows(setup: CompileSetup, report: Path) -> list[list[str]]:
    """ccache's totals for this cache dir, and the last kernel build's share of them."""
    if not setup.ccache:
        return [["compile (ccache)", str(setup.directory), "n/a", "n/a", "n/a", "n/a",
                 "ccache off or not installed"]]
    counters = read_ccache_counters(setup) or {}
    s = compilecache.summarize(counters)
    rate = f"{100 * s.hit_rate:.1f} % hit rate" if s.hit_rate is not None else "no compiles yet"
    remote = f"; remote {setup.remote}" if setup.remote else ""
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
    setup = compilecache.setup_for(ctx.paths.cache)
    rows = [artifact_row(ctx), *compile_rows(setup, ctx.paths.logs / COMPILE_CACHE_REPORT)]
    print(render_table(["cache", "where", "entries", "size", "hits", "misses", "note"], rows))


def task(ctx: Context) -> dict[str, Any]:
    return {
        "actions": [action(lambda: show(ctx))],
        "uptodate": [False],
        "doc": "Print the artifact cache's and the compile cache's size, hits and misses.",
        "verbosity": 2,
    }
