"""Build the kernel out of tree from the checked config, without an initramfs.

This is the long build (minutes). The program's initramfs is linked in later
by the embed stage, so changing the program costs a relink, never this. The
task depends only on the checked config and the tree, not on anything inside
kbuild/, which embed rewrites; and when nothing changed, make is not even run.
"""

from __future__ import annotations

import time

from tinyuki.cache import compile as compilecache
from tinyuki.config.context import KBUILD_DIR, Context
from tinyuki.formats import kconfig
from tinyuki.records import KernelStamp, Tree
from tinyuki.stage import Check, Output, Stage, register
from tinyuki.tasks.configure import CONFIG, forget_other_arch
from tinyuki.toolchain.kbuild import make_cmd, make_env, remove_initramfs_outputs, stream_make
from tinyuki.util import fs as fsutil

# The build tree goes with the stamp into the artifact cache: embed relinks in it.
STAMP = Output(KernelStamp.FILE)
KBUILD = Output(KBUILD_DIR, tree=True)


def build(ctx: Context) -> None:
    tree = Tree.load(ctx.paths.build).location()
    kbuild = ctx.paths.kbuild
    forget_other_arch(ctx, kbuild)  # configure may have come from the cache, without looking at kbuild/
    kbuild.mkdir(parents=True, exist_ok=True)
    # embed may have left CONFIG_INITRAMFS_SOURCE pointing at a cpio: this build has none.
    text = kconfig.set_option(CONFIG.at(ctx).read_text(encoding="utf-8"), kconfig.INITRAMFS_SOURCE, '""')
    fsutil.atomic_write(kbuild / ".config", text)
    remove_initramfs_outputs(kbuild)

    log = ctx.paths.logs / "kernel.log"
    fsutil.atomic_write(log, "")
    # ccache/distcc: speed only, never part of this task's key (see tinyuki/cache/compile.py)
    ctx.arch.require_compiler()
    compiling = compilecache.for_context(ctx)
    print(f"kernel: compiling with {compiling.describe()}")
    before = compilecache.read_counters(compiling)
    start = time.monotonic()
    stream_make(
        make_cmd(tree, kbuild, ctx.arch.image_target, "vmlinux", jobs=compiling.jobs(ctx.jobs),
                 make_vars=compiling.kbuild_vars(ctx.arch)),
        env=compiling.environ(make_env(ctx.profile.kernel, tree, kbuild)), log=log, what="kernel build",
        hint=f"fix the error shown (a patch in [kernel] patches, or a fragment); the whole output is in {log}",
    )
    elapsed = time.monotonic() - start
    line = compilecache.report(compiling, before, ctx.paths.logs / compilecache.REPORT, elapsed)
    if line:
        print(f"ccache: {line}")
    vmlinux, image = kbuild / "vmlinux", kbuild / ctx.arch.image
    release = kbuild / "include" / "config" / "kernel.release"
    KernelStamp(
        tree=str(tree),
        config_sha256=fsutil.sha256_file(kbuild / ".config"),
        vmlinux_sha256=fsutil.sha256_file(vmlinux),
        image_sha256=fsutil.sha256_file(image),
        release=release.read_text(encoding="utf-8").strip() if release.is_file() else None,
        settings=ctx.profile.stage_settings("kernel"),
    ).save(ctx.paths.build)
    print(f"kernel: built in {elapsed:.0f}s: vmlinux {vmlinux.stat().st_size} B, "
          f"{ctx.arch.image_name} {image.stat().st_size} B (without initramfs); log {log}")


@register
class KbuildPresent(Check):
    """The build dir still has its .config, vmlinux and the target architecture's image."""

    name = "kbuild-present"

    def __call__(self, ctx: Context) -> bool:
        return all((ctx.paths.kbuild / p).is_file() for p in (".config", "vmlinux", ctx.arch.image))

    def describe(self) -> str:
        return f"{self.name}: {KBUILD_DIR}/.config, vmlinux and the architecture's image"


# Not anything inside kbuild/ but its .config: embed rewrites the rest.
# a removed or half-deleted build dir must be rebuilt even though the inputs did not change
STAGE = Stage("kernel", "Build the kernel (-Os, out of tree, reproducible settings); output logged under logs/.", build,
              needs=("patch", "configure"), outputs=(STAMP, KBUILD),
              tools=("gcc", "binutils", "make"), env=True,
              recipe=("tinyuki.toolchain.kbuild", "tinyuki.formats.kconfig"),
              cache=True, checks=(KbuildPresent(),))
