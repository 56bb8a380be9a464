"""extract: unpack the verified tarball into a tree named by its sha256, shared by every profile.

The tree is built in a temporary directory next to its final place and renamed
when complete, so an existing tree is always a whole one; members that could
write outside it are refused (tinyuki/formats/safetar.py). The tarball's single
top-level directory (linux-6.1.183/, linux-source-6.1/) is dropped.
"""

from __future__ import annotations

import time
from pathlib import Path

from tinyuki.cache import trees
from tinyuki.config.context import Context
from tinyuki.formats import safetar
from tinyuki.records import Extracted, Verified
from tinyuki.source import download
from tinyuki.stage import Output, Predicate, Stage
from tinyuki.util.fs import publish_dir, scratch_dir, sweep


def tree_for(ctx: Context, source_sha256: str) -> Path:
    return ctx.paths.trees / f"src-{source_sha256}"


def extract(ctx: Context) -> None:
    src = Verified.load(ctx.paths.build)
    tree = tree_for(ctx, src.sha256)
    if tree.is_dir():
        trees.used(tree)  # young again: cache-prune keeps the trees builds use (tinyuki/cache/trees.py)
        print(f"extract: {tree} already holds {src.filename}")
    else:
        sweep(ctx.paths.trees, ".tmp-*")  # what crashed extractions and patch runs left (never a running one's)
        start = time.monotonic()
        with scratch_dir(ctx.paths.trees, f".tmp-src-{src.sha256[:16]}-") as scratch:
            tmp = scratch / "tree"
            try:
                # hashed while it is read: the bytes unpacked are the bytes verify checked, or nothing is kept
                n = safetar.extract(Path(src.path), tmp, expect_sha256=src.sha256)
            except safetar.NotVerified:
                download.discard(Path(src.path))  # a stored file that lies about its name must not stay
                raise
            if not publish_dir(tmp, tree):
                print(f"extract: another run extracted {tree} meanwhile; using it")
        print(f"extract: {n} members of {src.filename} -> {tree} in {time.monotonic() - start:.1f}s")
    Extracted(tree=str(tree), source_sha256=src.sha256).save(ctx.paths.build)


def tree_present(ctx: Context) -> bool:
    rec, src = Extracted.peek(ctx.paths.build), Verified.peek(ctx.paths.build)
    return rec is not None and src is not None and rec.source_sha256 == src.sha256 and Path(rec.tree).is_dir()


STAGE = Stage("extract", "Unpack the verified tarball safely into a tree shared by its hash.", extract,
              needs=("verify",), outputs=(Output(Extracted.FILE),),
              recipe=("tinyuki.formats.safetar",),
              checks=(Predicate(tree_present, "the extracted tree exists"),))
