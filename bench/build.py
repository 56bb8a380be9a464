"""Build benchmark: what the pipeline costs on top of the `make` commands it runs.

Each tinyuki figure has a baseline taken in the same run: kbuild's own no-op
`make bzImage` for a no-op `doit`, kbuild's relink of a new initramfs for the
rebuild after a one-line change to the program, and the same make commands
run by hand for a cold build (opt-in: minutes per run). The one-line change is
made to a copy of init/init.c named by a temporary copy of the profile, so the
repository's files are never modified; the build dir is put back afterwards.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import report
from bench.common import doit_cmd, kbuild_make, timed
from tinyuki.config.context import Context
from tinyuki.errors import die
from tinyuki.records import Tree
from tinyuki.toolchain.kbuild import make_cmd, make_env, remove_initramfs_outputs
from tinyuki.util.fs import read_json

EXTERNAL = ("cache", "ccache")  # bench/cache.py and bench/ccache.py, owned by the cache engineers


def _timed(cmd: Sequence[str | os.PathLike[str]], *, cwd: Path, env: dict[str, str] | None = None,
           log: Path) -> float:
    """Run a command (its output appended to `log`); a failure raises; the seconds it took."""
    return timed(cmd, cwd=cwd, env=env, log=log)[0]


def _doit(ctx: Context, *args: str) -> list[str]:
    return doit_cmd(*args, root=ctx.root)


def _case(name: str, ours: Sequence[float], theirs: Sequence[float], what: str) -> dict[str, Any]:
    a, b = report.summarize(ours), report.summarize(theirs)
    r = report.ratio(a.median if a else None, b.median if b else None)
    return {"name": name, "tinyuki": a.as_dict() if a else None, "baseline": b.as_dict() if b else None,
            "baseline_what": what, "ratio": None if r is None else round(r, 3)}


def noop(ctx: Context, runs: int, log: Path) -> dict[str, Any]:
    """A no-op `doit` against kbuild's no-op `make bzImage` in the same build dir."""
    tree = Tree.load(ctx.paths.build).location()
    make, env = kbuild_make(ctx, tree, ctx.arch.image_target)
    args = [f"profile={ctx.profile.path}", f"build_dir={ctx.paths.build}"]
    _timed(_doit(ctx, *args), cwd=ctx.root, log=log)  # make sure both are built and up to date
    _timed(make, cwd=ctx.root, env=env, log=log)
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(_timed(_doit(ctx, *args), cwd=ctx.root, log=log))
        theirs.append(_timed(make, cwd=ctx.root, env=env, log=log))
    return _case("no-op build", ours, theirs, "no-op `make bzImage`")


def changed_profile(ctx: Context, tmp: Path, change: Callable[[str], str]) -> Path:
    """A copy of the profile whose program is a changed copy of its first source."""
    src = ctx.profile.init.sources[0]
    copy = tmp / src.name
    try:
        text = change(src.read_text(encoding="utf-8"))
    except RuntimeError as e:  # the change does not fit this program: the user's to fix, not a crash
        raise die(f"{src}: {e}", "the build benchmark changes the line of the program that prints "
                  "'powering off'; give it such a line") from None
    copy.write_text(text, encoding="utf-8")
    for header in src.parent.glob("*.h"):
        shutil.copy(header, tmp / header.name)
    raw = ctx.profile.path.read_text(encoding="utf-8")
    old = f'sources = ["{src.relative_to(ctx.root)}"]' if src.is_relative_to(ctx.root) else ""
    if not old or old not in raw:
        raise die(f"cannot point a copy of {ctx.profile.path} at a changed copy of {src}: "
                  f"it has no line `{old or 'sources = [...]'}` naming it inside {ctx.root}",
                  "the build benchmark needs a profile whose [init] sources is one file of the project")
    prof = tmp / ctx.profile.path.name  # same file name: same profile name
    prof.write_text(raw.replace(old, f'sources = ["{copy}"]'), encoding="utf-8")
    return prof


def one_line_change(text: str) -> str:
    """Change one line of the program so that its binary changes (a string it prints)."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if "powering off" in line and '"' in line:
            lines[i] = line.replace("powering off", "powering off now", 1)
            return "".join(lines)
    raise RuntimeError("no line printing 'powering off' to change in the program")


def rebuild(ctx: Context, runs: int, log: Path) -> dict[str, Any]:
    """doit after a one-line change to the program, against kbuild's relink of a new initramfs."""
    tree = Tree.load(ctx.paths.build).location()
    make, env = kbuild_make(ctx, tree, ctx.arch.image_target, "vmlinux")
    real = [f"profile={ctx.profile.path}", f"build_dir={ctx.paths.build}"]
    ours, theirs = [], []
    with tempfile.TemporaryDirectory(prefix="tinyuki-bench-init-") as tmp:
        prof = changed_profile(ctx, Path(tmp), one_line_change)
        changed = [f"profile={prof}", f"build_dir={ctx.paths.build}"]
        _timed(_doit(ctx, *real), cwd=ctx.root, log=log)
        try:
            for _ in range(runs):
                ours.append(_timed(_doit(ctx, *changed), cwd=ctx.root, log=log))
                remove_initramfs_outputs(ctx.paths.kbuild)
                theirs.append(_timed(make, cwd=ctx.root, env=env, log=log))
                ours.append(_timed(_doit(ctx, *real), cwd=ctx.root, log=log))  # and back: the same change
        finally:
            _timed(_doit(ctx, *real), cwd=ctx.root, log=log)
    return _case("rebuild after a one-line change to the program", ours, theirs,
                 "kbuild relink of a new initramfs (`make bzImage vmlinux`)")


def cold(ctx: Context, runs: int, log: Path, scratch: Path) -> dict[str, Any]:
    """A full build in a fresh build dir (no ccache, no artifact cache) against the same makes by hand."""
    tree = Tree.load(ctx.paths.build).location()
    env = {**os.environ, "TINYUKI_ARTIFACT_CACHE": "off", "TINYUKI_CCACHE": "0", "CCACHE_DISABLE": "1"}
    ours, theirs = [], []
    for i in range(runs):
        bdir = scratch / f"cold-{i}"
        shutil.rmtree(bdir, ignore_errors=True)
        ours.append(_timed(_doit(ctx, f"profile={ctx.profile.path}", f"build_dir={bdir}", "kernel"),
                           cwd=ctx.root, env=env, log=log))
        shutil.rmtree(bdir, ignore_errors=True)
        hand = scratch / f"hand-{i}"
        shutil.rmtree(hand, ignore_errors=True)
        hand.mkdir(parents=True)
        menv = make_env(ctx.profile.kernel, tree, hand, env)
        start = time.monotonic()
        arch_vars = ctx.arch.make_vars()
        _timed(make_cmd(tree, hand, "tinyconfig", jobs=ctx.jobs, make_vars=arch_vars), cwd=hand, env=menv, log=log)
        _timed(["sh", tree / "scripts/kconfig/merge_config.sh", "-m", "-O", hand, hand / ".config",
                *ctx.profile.kernel.fragments], cwd=hand, env=menv, log=log)
        _timed(make_cmd(tree, hand, "olddefconfig", jobs=ctx.jobs, make_vars=arch_vars), cwd=hand, env=menv, log=log)
        _timed(make_cmd(tree, hand, ctx.arch.image_target, "vmlinux", jobs=ctx.jobs, make_vars=arch_vars), cwd=hand,
               env=menv, log=log)
        theirs.append(time.monotonic() - start)
        shutil.rmtree(hand, ignore_errors=True)
    return _case("cold build of the kernel (configure + build)", ours, theirs,
                 "tinyconfig + merge_config.sh + olddefconfig + `make bzImage vmlinux` by hand")


def external(results_dir: Path) -> dict[str, Any]:
    """The cache engineers' figures: their module's `results()` if it has one, else their JSON."""
    out: dict[str, Any] = {}
    for name in EXTERNAL:
        got: Any = None
        try:
            mod = importlib.import_module(f"bench.{name}")
            fn = getattr(mod, "results", None) or getattr(mod, "latest", None)
            if callable(fn):
                got = fn()
        except Exception as e:  # their module, their failure: reported, not fatal to this benchmark
            got = {"error": f"bench.{name}: {e}"}
        if got is None:
            path = results_dir / f"{name}.json"
            if path.is_file():
                try:
                    got = read_json(path)
                except (OSError, ValueError) as e:
                    got = {"error": f"{path}: {e}"}
        if got is not None:
            out[name] = got
    return out


def measure(ctx: Context, *, runs: int, cold_build: bool, results_dir: Path) -> dict[str, Any]:
    log = ctx.paths.logs / "bench-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("", encoding="utf-8")
    cases = [noop(ctx, max(runs, 3), log), rebuild(ctx, runs, log)]
    if cold_build:
        cases.append(cold(ctx, runs, log, ctx.root / "build" / "bench-cold"))
    return {"cases": cases, "external": external(results_dir), "log": str(log)}
