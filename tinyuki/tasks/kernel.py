"""Build the kernel out of tree from the checked config: every object, and one link.

This is the long build (minutes). Its key is the checked config and the tree,
never the program: changing the program costs embed's relink, never this.
Still, a build links once, not twice: the .config names the cpio by a name
inside the build dir (kbuild.KBUILD_CPIO), and this stage puts there the cpio
embed will want (the program's, when the initramfs stage already built it; a
placeholder otherwise), so that embed finds the link done and only checks and
copies it. Which cpio that link carries is speed, not a product of this stage:
its record holds nothing of it, and embed relinks whenever the link carries
another (a kernel restored from the cache for another program).
The task depends only on the checked config and the tree, not on anything
inside kbuild/, which embed rewrites; and when nothing changed, make is not
even run.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from tinyuki.cache import compile as compilecache
from tinyuki.config.context import KBUILD_DIR, Context
from tinyuki.errors import die
from tinyuki.formats import kconfig
from tinyuki.records import KernelStamp, Tree
from tinyuki.stage import Check, Output, Stage, register
from tinyuki.tasks.configure import CONFIG, forget_other_arch
from tinyuki.tasks.initramfs import CPIO
from tinyuki.toolchain.kbuild import KBUILD_CPIO, make_cmd, make_env, placeholder_cpio, put_cpio, stream_make
from tinyuki.util import fs as fsutil
from tinyuki.util.runner import run

# The build tree goes with the stamp into the artifact cache: embed relinks in it.
STAMP = Output(KernelStamp.FILE)
KBUILD = Output(KBUILD_DIR, tree=True)
# Every object of the kernel, as kbuild archives them for the link (a thin archive: their names only).
OBJECTS = "vmlinux.a"


def build(ctx: Context) -> None:
    tree = Tree.load(ctx.paths.build).location()
    kbuild = ctx.paths.kbuild
    forget_other_arch(ctx, kbuild)  # configure may have come from the cache, without looking at kbuild/
    kbuild.mkdir(parents=True, exist_ok=True)
    # The checked config with the cpio embed links in: kbuild's syncconfig (stdin is never a terminal) gives the
    # options that appear with it (CONFIG_INITRAMFS_ROOT_UID, the compression) their defaults, as olddefconfig.
    checked = CONFIG.at(ctx).read_text(encoding="utf-8")
    fsutil.atomic_write(kbuild / ".config", kconfig.set_option(checked, kconfig.INITRAMFS_SOURCE,
                                                               kconfig.quote(KBUILD_CPIO)))
    put_cpio(kbuild, cpio_for_link(ctx))

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
    check_synced(checked, (kbuild / ".config").read_text(encoding="utf-8"), kbuild)
    release = kbuild / "include" / "config" / "kernel.release"
    members = archive_members(kbuild, log)
    KernelStamp(
        tree=str(tree),
        config_sha256=fsutil.sha256_file(kbuild / ".config"),
        objects_sha256=objects_digest(kbuild, members),
        release=release.read_text(encoding="utf-8").strip() if release.is_file() else None,
        settings=ctx.profile.stage_settings("kernel"),
    ).save(ctx.paths.build)
    image = kbuild / ctx.arch.image
    print(f"kernel: built in {elapsed:.0f}s: {len(members)} objects, {ctx.arch.image_name} {image.stat().st_size} B;"
          f" log {log}")


def cpio_for_link(ctx: Context) -> bytes:
    """The cpio embed will most likely link in, as far as it is known now: the program's, once the initramfs
    stage built it, else kbuild's default. (No setting decides it, [kernel] initramfs included: none reaches
    this stage. With the program as an external initrd, embed then links once more, without it.)"""
    cpio = CPIO.at(ctx)
    if cpio.is_file():
        return cpio.read_bytes()
    return placeholder_cpio(ctx.profile.kernel.source_date_epoch)


def check_synced(checked: str, synced: str, kbuild: Path) -> None:
    """kbuild's syncconfig may only have added the initramfs's own options: any other change would mean the
    kernel is not built from the configuration configure proved."""
    want, got = kconfig.parse_config(checked), kconfig.parse_config(synced)
    changed = sorted(s for s in want.keys() | got.keys()
                     if not s.startswith("CONFIG_INITRAMFS_") and want.get(s) != got.get(s))
    if changed:
        shown = ", ".join(f"{s}: {kconfig.describe(want.get(s))} -> {kconfig.describe(got.get(s))}"
                          for s in changed[:5])
        raise die(f"kbuild changed the checked configuration while building in {kbuild}: {shown}",
                  "run `doit configure kernel` again; if it persists, remove the build dir's kbuild/")


def archive_members(kbuild: Path, log: Path) -> list[str]:
    """The objects vmlinux.a holds, in link order (a thin archive: their names, relative to the build dir)."""
    out = run(["ar", "t", OBJECTS], cwd=kbuild, quiet=True, merge_stderr=False, what=f"listing {OBJECTS}",
              hint=f"install binutils; the build's output is in {log}")
    return [line for line in out.stdout.decode().splitlines() if line]


def objects_digest(kbuild: Path, members: list[str]) -> str:
    """One sha256 over every object the link takes, in order, but the embedded initramfs's (usr/, the program's):
    what `doit repro` compares of this stage."""
    h = hashlib.sha256()
    for name in members:
        if name.startswith("usr/"):
            continue
        h.update(f"{name}\0{fsutil.sha256_file(kbuild / name)}\n".encode())
    return h.hexdigest()


@register
class KbuildPresent(Check):
    """The build dir still has its .config, vmlinux and the target architecture's image."""

    name = "kbuild-present"

    def __call__(self, ctx: Context) -> bool:
        return all((ctx.paths.kbuild / p).is_file() for p in (".config", OBJECTS, "vmlinux", ctx.arch.image))

    def describe(self) -> str:
        return f"{self.name}: {KBUILD_DIR}/.config, {OBJECTS}, vmlinux and the architecture's image"


# Not anything inside kbuild/ but its .config: embed rewrites the rest.
# a removed or half-deleted build dir must be rebuilt even though the inputs did not change
STAGE = Stage("kernel", "Build the kernel (-Os, out of tree, reproducible settings); output logged under logs/.", build,
              needs=("patch", "configure"), outputs=(STAMP, KBUILD),
              tools=("gcc", "binutils", "make"), env=True,
              recipe=("tinyuki.toolchain.kbuild", "tinyuki.formats.kconfig"),
              cache=True, checks=(KbuildPresent(),))
