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
import tempfile
from pathlib import Path
from typing import Any

from doit.tools import config_changed

from tasks import series as quilt
from tasks.context import Context
from tasks.errors import TinyukiError, action, die
from tasks.fsutil import atomic_write_json, publish_dir, read_json, remove_tree
from tasks.runner import run

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


def apply_series(pristine: Path, dest: Path, series: quilt.Series, log: Path) -> None:
    """Build `dest` as pristine + every patch of the series, or raise naming the patch that failed."""
    run(["cp", "-al", str(pristine), str(dest)], what="hard-linking the pristine tree")
    for name, patch_file in zip(series.names, series.patches, strict=True):
        data = patch_file.read_bytes()
        break_links(dest, quilt.touched_files(data))
        log.unlink(missing_ok=True)
        try:
            run([*PATCH, "--dry-run", "-i", str(patch_file)], cwd=dest, log=log, what=f"patch {name}")
        except TinyukiError:
            output = log.read_text(errors="replace") if log.exists() else ""
            hunks = quilt.failed_hunks(data, output)
            body = "\n    ".join(output.strip().splitlines()[1:][-20:])
            rejected = ("\n  rejected hunks:\n    " + "\n    ".join(hunks.splitlines())) if hunks else ""
            raise die(f"patch {name} ({patch_file}) does not apply to the kernel tree:\n    {body}{rejected}",
                      f"refresh the patch against this kernel version, or remove it from {series.file}") from None
        run([*PATCH, "-i", str(patch_file)], cwd=dest, log=log, what=f"patch {name}")


def _patch(ctx: Context) -> None:
    ext = read_json(ctx.paths.extracted)
    pristine, sha = Path(ext["tree"]), ext["source_sha256"]
    series = quilt.read_series(ctx.profile.kernel.patches)
    psha = quilt.patches_sha256(series)
    if psha is None:
        tree = pristine
        print(f"patch: the series is empty; building the pristine tree {tree}")
    else:
        tree = tree_for(ctx, sha, psha)
        if tree.is_dir():
            print(f"patch: {tree} already holds this series")
        else:
            ctx.paths.trees.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=ctx.paths.trees, prefix=f".tmp-patched-{psha[:16]}-")) / "tree"
            try:
                apply_series(pristine, tmp, series, ctx.paths.logs / "patch.log")
                if not publish_dir(tmp, tree):
                    print(f"patch: another run patched {tree} meanwhile; using it")
            finally:
                remove_tree(tmp.parent)
            print(f"patch: applied {len(series.patches)} patch(es) -> {tree}")
    atomic_write_json(ctx.paths.tree, {
        "tree": str(tree), "source_sha256": sha, "patches_sha256": psha, "patches": series.names,
    })


def _output_good(ctx: Context) -> bool:
    try:
        rec = read_json(ctx.paths.tree)
        return rec["source_sha256"] == read_json(ctx.paths.extracted)["source_sha256"] and Path(rec["tree"]).is_dir()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def task(ctx: Context) -> dict[str, Any]:
    series_file = ctx.profile.kernel.patches
    try:
        listed = quilt.read_series(series_file)
        deps = [str(p) for p in listed.patches]
        names = listed.names
    except TinyukiError:
        deps, names = [], None  # the action reports what is wrong with the series
    return {
        "actions": [(action(_patch), [ctx])],
        "file_dep": [str(ctx.paths.extracted), *([str(series_file)] if series_file else []), *deps],
        "targets": [str(ctx.paths.tree)],
        "uptodate": [config_changed({"series": str(series_file), "patches": names}), lambda: _output_good(ctx)],
        "verbosity": 2,
    }
