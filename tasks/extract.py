"""extract: unpack the verified tarball into a tree named by its sha256, shared by every profile.

The tree is built in a temporary directory next to its final place and renamed
when complete, so an existing tree is always a whole one; members that could
write outside it are refused (tasks/safetar.py). The tarball's single top-level
directory (linux-6.1.183/, linux-source-6.1/) is dropped.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from tasks import safetar
from tasks.context import Context
from tasks.errors import action
from tasks.fsutil import atomic_write_json, publish_dir, read_json, remove_tree


def tree_for(ctx: Context, source_sha256: str) -> Path:
    return ctx.paths.trees / f"src-{source_sha256}"


def _extract(ctx: Context) -> None:
    src = read_json(ctx.paths.source)
    sha = src["sha256"]
    tree = tree_for(ctx, sha)
    if tree.is_dir():
        print(f"extract: {tree} already holds {src['filename']}")
    else:
        ctx.paths.trees.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=ctx.paths.trees, prefix=f".tmp-src-{sha[:16]}-")) / "tree"
        start = time.monotonic()
        try:
            n = safetar.extract(Path(src["path"]), tmp)
            if not publish_dir(tmp, tree):
                print(f"extract: another run extracted {tree} meanwhile; using it")
        finally:
            remove_tree(tmp.parent)
        print(f"extract: {n} members of {src['filename']} -> {tree} in {time.monotonic() - start:.1f}s")
    atomic_write_json(ctx.paths.extracted, {"tree": str(tree), "source_sha256": sha})


def _output_good(ctx: Context) -> bool:
    try:
        rec = read_json(ctx.paths.extracted)
        return rec["source_sha256"] == read_json(ctx.paths.source)["sha256"] and Path(rec["tree"]).is_dir()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def task(ctx: Context) -> dict[str, Any]:
    return {
        "actions": [(action(_extract), [ctx])],
        "file_dep": [str(ctx.paths.source)],
        "targets": [str(ctx.paths.extracted)],
        "uptodate": [lambda: _output_good(ctx)],
        "verbosity": 2,
    }
