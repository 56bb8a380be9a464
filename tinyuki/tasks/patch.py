"""patch: apply the profile's quilt-style series to a copy of the pristine tree.

The copy is a hard-link farm (`cp -al`, seconds for a 1.5 GB tree) in which
every file a patch touches is first replaced by a real copy, so the shared
pristine tree is never written. Each patch is tried with --dry-run before it is
applied, and the farm is renamed into place only when the whole series applied:
a failing patch leaves no half-patched tree, and its error names the patch and
shows the rejected hunks. The result is named by the source hash and the
series' hash; an empty series builds the pristine tree as it is.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tinyuki.cache import trees
from tinyuki.cache.keys import tree_key
from tinyuki.config.context import Context
from tinyuki.errors import TinyukiError, die
from tinyuki.formats import kversion
from tinyuki.formats import series as quilt
from tinyuki.records import Extracted, Tree
from tinyuki.stage import Output, Predicate, Stage
from tinyuki.util.fs import publish_dir, scratch_dir, sweep
from tinyuki.util.runner import run

PATCH = ["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch"]


def tree_for(ctx: Context, source_sha256: str, patches_sha256: str) -> Path:
    return ctx.paths.trees / f"patched-{source_sha256}-{patches_sha256}"


def break_links(tree: Path, rel_paths: set[str]) -> None:
    """Give each file about to be patched its own inode, so the pristine tree keeps its bytes."""
    for rel in sorted(rel_paths):
        f = tree / rel
        if f.is_symlink() or not f.is_file():
            continue
        tmp = f.with_name(f".{f.name}.tinyuki-copy")
        shutil.copy2(f, tmp)
        os.replace(tmp, f)


def _escapes(name: str, patch_file: Path, header: str, why: str, series: quilt.Series) -> TinyukiError:
    return die(f"patch {name} ({patch_file}): the path {header!r} escapes the tree ({why})",
               f"a patch may only change files inside the kernel tree; fix the patch or remove it from {series.file}")


def check_names(series: quilt.Series) -> None:
    """Refuse a series in which any header names a path outside the tree, before anything is copied."""
    for name, patch_file in zip(series.names, series.patches, strict=True):
        for header, p1 in quilt.header_names(patch_file.read_bytes()):
            why = quilt.escaping_path(header, p1)
            if why:
                raise _escapes(name, patch_file, header, why, series)


def check_links(tree: Path, name: str, patch_file: Path, data: bytes, series: quilt.Series) -> None:
    """Refuse a path that leaves `tree` through a symlink (one an earlier patch of the series may have made).

    Every component is looked at with lstat: a symlink among them must
    resolve inside the tree, or break_links would copy and replace the file it
    leads to, outside, before patch itself refused the patch.
    """
    root = os.path.realpath(tree)
    for header, p1 in quilt.header_names(data):
        rel = (quilt.strip1(header) if p1 else header) or header
        here = tree
        for part in rel.split("/"):
            here = here / part
            if not here.is_symlink():
                continue
            target = os.path.realpath(here)
            if os.path.commonpath([root, target]) != root:
                raise _escapes(name, patch_file, header,
                               f"through the symlink {here.relative_to(tree)} -> {os.readlink(here)}", series)


def apply_series(pristine: Path, dest: Path, series: quilt.Series, log: Path) -> None:
    """Build `dest` as pristine + every patch of the series, or raise naming the patch that failed."""
    check_names(series)
    version = kversion.tree_version(pristine)
    kernel = f"Linux {version}" if version else "the kernel tree"
    run(["cp", "-al", str(pristine), str(dest)], what="hard-linking the pristine tree")
    for name, patch_file in zip(series.names, series.patches, strict=True):
        data = patch_file.read_bytes()
        check_links(dest, name, patch_file, data, series)
        break_links(dest, quilt.touched_files(data))
        log.unlink(missing_ok=True)
        try:
            run([*PATCH, "--dry-run", "-i", str(patch_file)], cwd=dest, log=log, what=f"patch {name}")
        except TinyukiError:
            output = log.read_text(errors="replace") if log.exists() else ""
            hunks = quilt.failed_hunks(data, output)
            body = "\n    ".join(output.strip().splitlines()[1:][-20:])
            rejected = ("\n  rejected hunks:\n    " + "\n    ".join(hunks.splitlines())) if hunks else ""
            raise die(f"patch {name} ({patch_file}) does not apply to {kernel}:\n    {body}{rejected}",
                      f"refresh the patch against {kernel}, or remove it from {series.file}"
                      " (a series for another kernel version is a series of its own: [kernel] patches)") from None
        run([*PATCH, "-i", str(patch_file)], cwd=dest, log=log, what=f"patch {name}")


def patch(ctx: Context) -> None:
    ext = Extracted.load(ctx.paths.build)
    pristine, sha = Path(ext.tree), ext.source_sha256
    series = quilt.read_series(ctx.profile.kernel.patches)
    psha = quilt.patches_sha256(series)
    if psha is None:
        tree = pristine
        trees.used(tree)
        print(f"patch: the series is empty; building the pristine tree {tree}")
    else:
        tree = tree_for(ctx, sha, psha)
        if tree.is_dir():
            trees.used(tree)  # young again: cache-prune keeps the trees builds use (tinyuki/cache/trees.py)
            print(f"patch: {tree} already holds this series")
        else:
            sweep(ctx.paths.trees, ".tmp-*")  # what crashed runs left (never a running one's: tinyuki/util/fs.py)
            with scratch_dir(ctx.paths.trees, f".tmp-patched-{psha[:16]}-") as scratch:
                tmp = scratch / "tree"
                apply_series(pristine, tmp, series, ctx.paths.logs / "patch.log")
                if not publish_dir(tmp, tree):
                    print(f"patch: another run patched {tree} meanwhile; using it")
            print(f"patch: applied {len(series.patches)} patch(es) -> {tree}")
    Tree(tree=str(tree), source_sha256=sha, patches_sha256=psha, patches=list(series.names)).save(ctx.paths.build)


def patch_files(ctx: Context) -> list[Path]:
    """The patches the series lists: their contents make the tree (the series file itself is a setting's file)."""
    try:
        return list(quilt.read_series(ctx.profile.kernel.patches).patches)
    except TinyukiError:
        return []  # the stage reports what is wrong with the series


def tree_present(ctx: Context) -> bool:
    rec, ext = Tree.peek(ctx.paths.build), Extracted.peek(ctx.paths.build)
    return rec is not None and ext is not None and rec.source_sha256 == ext.source_sha256 \
        and Path(rec.tree).is_dir()


STAGE = Stage("patch", "Apply the profile's patch series (quilt-style) into a tree keyed by source and patches.", patch,
              needs=("extract",), outputs=(Output(Tree.FILE),), inputs=patch_files,
              recipe=("tinyuki.formats.series",),
              checks=(Predicate(tree_present, "the patched tree exists"),), identity=tree_key)
