"""Configure the kernel: `make tinyconfig`, the profile's fragments in order, `olddefconfig`.

Kconfig silently drops any option whose dependencies are not met, so the
result is checked against every line of every fragment: a configure that
succeeds is a .config in which each requested option holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from doit.tools import config_changed

from tasks import fsutil, kconfig, taskkey
from tasks.cache import cached
from tasks.context import Context
from tasks.errors import die
from tasks.kbuild import make_cmd, make_env, read_tree
from tasks.runner import run

MERGE_HINT = "the kernel tree's scripts/kconfig/merge_config.sh; run it by hand as shown to see its messages"


def requested_file(ctx: Context) -> Path:
    """JSON list of what the fragments asked for (symbol, value, file, line), for later checks."""
    return ctx.paths.build / "kernel.requested.json"


def fragment_name(ctx: Context, path: Path) -> str:
    """How an error names a fragment: relative to the project when it lives there."""
    try:
        return str(path.relative_to(ctx.root))
    except ValueError:
        return str(path)


def configure(ctx: Context) -> None:
    tree = read_tree(ctx.paths.tree)
    kbuild = ctx.paths.kbuild
    kbuild.mkdir(parents=True, exist_ok=True)
    fragments = ctx.profile.kernel.fragments
    # Read the fragments first: a malformed line fails before minutes of make.
    requests = kconfig.merge_requests(kconfig.read_fragment(f, fragment_name(ctx, f)) for f in fragments)

    env = make_env(ctx.profile.kernel, tree, kbuild)
    log = ctx.paths.logs / "configure.log"
    fsutil.atomic_write(log, "")
    dot_config = kbuild / ".config"
    run(make_cmd(tree, kbuild, "tinyconfig", jobs=ctx.jobs), env=env, log=log, what="make tinyconfig",
        hint=f"see {log}; the tree must be clean (no .config in it) for an out-of-tree build")
    # merge_config.sh makes its temp files in the cwd: run it in the build dir, never in the tree.
    run(["sh", tree / "scripts" / "kconfig" / "merge_config.sh", "-m", "-O", kbuild, dot_config, *fragments],
        cwd=kbuild, env=env, log=log, what="merging the config fragments", hint=MERGE_HINT)
    run(make_cmd(tree, kbuild, "olddefconfig", jobs=ctx.jobs), env=env, log=log, what="make olddefconfig",
        hint=f"see {log}")

    text = dot_config.read_text(encoding="utf-8")
    mismatches = kconfig.check(requests, kconfig.parse_config(text))
    if mismatches:
        hints = kconfig.tree_depends(tree, [m.request.symbol for m in mismatches])
        mismatches = [kconfig.Mismatch(m.request, m.actual, tuple(hints.get(m.request.symbol, ())))
                      for m in mismatches]
        raise die(f"{kconfig.render(mismatches)}\n  resulting config: {dot_config}",
                  "request the missing dependencies in the same fragment (see the Kconfig lines), "
                  "or drop the option; "
                  f"`make -C {tree} O={kbuild} menuconfig` and `/SYMBOL` show why an option is hidden")

    # The initramfs is the embed stage's business: the checked config never carries one.
    text = kconfig.set_option(text, kconfig.INITRAMFS_SOURCE, '""')
    fsutil.atomic_write_json(requested_file(ctx), [r.to_json() for r in requests.values()])
    fsutil.atomic_write(ctx.paths.config, text)
    print(f"configure: {len(requests)} requested options hold; {ctx.paths.config}")


def task(ctx: Context) -> dict[str, Any]:
    fragments = [str(f) for f in ctx.profile.kernel.fragments]
    return {
        "actions": [cached(ctx, "configure", lambda: configure(ctx))],
        "file_dep": [str(ctx.paths.tree), *fragments],
        "targets": [str(ctx.paths.config), str(requested_file(ctx))],
        # The fragments' contents are file_dep; their order and selection matter too.
        # one config_changed per task: doit keeps a single saved value for it
        "uptodate": [config_changed({"fragments": fragments, **taskkey.toolchain_state()})],
        "clean": True,
        "verbosity": 2,
    }
