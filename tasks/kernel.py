"""Build the kernel out of tree from the checked config, without an initramfs.

This is the long build (minutes). The program's initramfs is linked in later
by the embed stage, so changing the program costs a relink, never this. The
task depends only on the checked config and the tree, not on anything inside
kbuild/, which embed rewrites; and when nothing changed, make is not even run.
"""

from __future__ import annotations

import time
from typing import Any

from doit.tools import config_changed

from tasks import compilecache, fsutil, kconfig, taskkey
from tasks.cache import cached
from tasks.context import Context
from tasks.kbuild import make_cmd, make_env, read_tree, remove_initramfs_outputs, stream_make
from tasks.stats import COMPILE_CACHE_REPORT, read_ccache_counters, report_compile_cache

BZIMAGE = "arch/x86/boot/bzImage"


def build_settings(ctx: Context) -> dict[str, Any]:
    """Profile settings that change the kernel's bytes without changing its .config."""
    k = ctx.profile.kernel
    return {"source_date_epoch": k.source_date_epoch, "build_user": k.build_user,
            "build_host": k.build_host, "build_version": k.build_version}


def build(ctx: Context) -> None:
    tree = read_tree(ctx.paths.tree)
    kbuild = ctx.paths.kbuild
    kbuild.mkdir(parents=True, exist_ok=True)
    # embed may have left CONFIG_INITRAMFS_SOURCE pointing at a cpio: this build has none.
    text = kconfig.set_option(ctx.paths.config.read_text(encoding="utf-8"), kconfig.INITRAMFS_SOURCE, '""')
    fsutil.atomic_write(kbuild / ".config", text)
    remove_initramfs_outputs(kbuild)

    log = ctx.paths.logs / "kernel.log"
    fsutil.atomic_write(log, "")
    # ccache/distcc: speed only, never part of this task's key (see tasks/compilecache.py)
    compiling = compilecache.setup_for(ctx.paths.cache)
    print(f"kernel: compiling with {compiling.describe()}")
    before = read_ccache_counters(compiling)
    start = time.monotonic()
    stream_make(
        make_cmd(tree, kbuild, "bzImage", "vmlinux", jobs=compiling.jobs(ctx.jobs), make_vars=compiling.make_vars()),
        env=compiling.environ(make_env(ctx.profile.kernel, tree, kbuild)), log=log, what="kernel build",
        hint=f"fix the error shown (a patch in [kernel] patches, or a fragment); the whole output is in {log}",
    )
    elapsed = time.monotonic() - start
    report_compile_cache(compiling, before, ctx.paths.logs / COMPILE_CACHE_REPORT, elapsed)
    vmlinux, bzimage = kbuild / "vmlinux", kbuild / BZIMAGE
    release = kbuild / "include" / "config" / "kernel.release"
    stamp = {
        "tree": str(tree),
        "config_sha256": fsutil.sha256_file(kbuild / ".config"),
        "vmlinux_sha256": fsutil.sha256_file(vmlinux),
        "bzimage_sha256": fsutil.sha256_file(bzimage),
        "release": release.read_text(encoding="utf-8").strip() if release.is_file() else None,
        "settings": build_settings(ctx),
    }
    fsutil.atomic_write_json(ctx.paths.kernel_stamp, stamp)
    print(f"kernel: built in {elapsed:.0f}s: vmlinux {vmlinux.stat().st_size} B, "
          f"bzImage {bzimage.stat().st_size} B (without initramfs); log {log}")


def task(ctx: Context) -> dict[str, Any]:
    kbuild = ctx.paths.kbuild

    def kbuild_intact() -> bool:
        """A removed or half-deleted build dir must be rebuilt even though the inputs did not change."""
        return all((kbuild / p).is_file() for p in (".config", "vmlinux", BZIMAGE))

    return {
        "actions": [cached(ctx, "kernel", lambda: build(ctx))],
        "file_dep": [str(ctx.paths.config), str(ctx.paths.tree)],
        "targets": [str(ctx.paths.kernel_stamp)],
        "uptodate": [config_changed({"settings": build_settings(ctx), **taskkey.toolchain_state()}), kbuild_intact],
        "clean": True,
        "verbosity": 2,
    }
