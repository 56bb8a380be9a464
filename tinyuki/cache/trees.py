"""The shared source trees under cache/trees/: keeping them bounded, and sweeping what crashed runs left.

Extracted (`src-<sha>`) and patched (`patched-<sha>-<sha>`) trees are named by
content and are the biggest things in the cache (over a GiB each), so
`doit cache-prune` covers them with the artifact cache's budget: the most
recently used trees are kept while they fit, the rest removed. A tree's use
is its directory's mtime, which extract and patch refresh whenever a build
takes the tree. A tree removed here is only extracted (or patched) again
when a build needs it. Temporary trees of crashed runs (`.tmp-*`) go too,
never one a running extraction still holds (tinyuki/util/fs.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import Any

from tinyuki.util.fs import remove_tree, sweep

TREE_RE = re.compile(r"^(src|patched)-[0-9a-f]{64}(-[0-9a-f]{64})?$")


def used(tree: Path) -> None:
    """Mark a tree as just used, so pruning keeps it over older ones."""
    with contextlib.suppress(OSError):
        os.utime(tree)


def disk_size(tree: Path, seen: set[tuple[int, int]]) -> int:
    """Bytes on disk of the files not counted yet: a patched tree shares most inodes with its source tree."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in [*dirnames, *filenames]:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in seen:
                continue
            seen.add(ident)
            total += st.st_blocks * 512
    return total


def listing(trees: Path) -> list[tuple[Path, float]]:
    """The content-named trees with their last use, most recent first."""
    out = []
    if trees.is_dir():
        for p in trees.iterdir():
            if TREE_RE.match(p.name) and p.is_dir() and not p.is_symlink():
                with contextlib.suppress(OSError):
                    out.append((p, p.stat().st_mtime))
    out.sort(key=lambda x: -x[1])
    return out


def prune(trees: Path, keep_bytes: int, now: float | None = None) -> dict[str, Any]:
    """Sweep leftovers, then keep the most recently used trees that fit in `keep_bytes` and remove the rest."""
    now = time.time() if now is None else now
    leftovers = sweep(trees, ".tmp-*", now=now) if trees.is_dir() else []
    seen: set[tuple[int, int]] = set()
    kept = freed = removed = 0
    full = False
    for tree, _mtime in listing(trees):
        size = disk_size(tree, seen)
        if not full and kept + size <= keep_bytes:
            kept += size
            continue
        full = True  # strictly by recency, as the artifact cache prunes
        remove_tree(tree)
        removed += 1
        freed += size
    return {"kept_bytes": kept, "removed_trees": removed, "removed_leftovers": len(leftovers), "freed_bytes": freed}
