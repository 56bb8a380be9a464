"""embed: put the initramfs into the kernel (CONFIG_INITRAMFS_SOURCE) and relink.

Only usr/ and the final link are redone: seconds, not minutes. kbuild decides
whether to rebuild its copy of the initramfs by mtime, and the initramfs stage
may give every build of the cpio the same fixed mtime, so that copy is deleted
before every relink; the result is then compared with the cpio, so a stale
program can never ship.
"""

from __future__ import annotations

import time
from pathlib import Path

from tinyuki.arch import ARCHES
from tinyuki.cache import compile as compilecache
from tinyuki.config.context import Context
from tinyuki.errors import die
from tinyuki.formats import kconfig
from tinyuki.formats.elf import has_pvh_entry
from tinyuki.records import Tree
from tinyuki.stage import Output, Stage
from tinyuki.tasks.initramfs import CPIO
from tinyuki.toolchain.kbuild import (
    embedded_payload,
    make_cmd,
    make_env,
    remove_initramfs_outputs,
    stream_make,
)
from tinyuki.util import fs as fsutil
from tinyuki.util.runner import run

# The kernel with the initramfs inside: these are what boots. The image is the
# architecture's own, under its own name: bzImage (x86_64), Image (arm64).
VMLINUX = Output("vmlinux", manifest="vmlinux")
IMAGES = {a.name: Output(a.image_name, manifest=a.image_name, arch=a.name) for a in ARCHES.values()}


def image_output(ctx: Context) -> Output:
    """The bootable image this profile's build writes (bzImage, Image)."""
    return IMAGES[ctx.arch.name]


def check_cpio_path(cpio: Path) -> None:
    """kbuild takes CONFIG_INITRAMFS_SOURCE as a cpio only if it is one word ending in .cpio."""
    if not cpio.is_file():
        raise die(f"the initramfs {cpio} does not exist", "run `doit initramfs` first (or the whole pipeline)")
    if any(c.isspace() for c in str(cpio)) or '"' in str(cpio):
        raise die(f"kbuild cannot embed {cpio}: its path contains a space or a quote",
                  "use a build_dir whose path has no spaces (doit build_dir=/path/without/spaces)")
    if cpio.suffix != ".cpio":
        raise die(f"kbuild embeds {cpio} as a file list unless its name ends in .cpio",
                  "keep the initramfs stage's output name (initramfs.cpio)")


def verify_embedded(kbuild: Path, cpio: bytes) -> bool:
    """True if kbuild's compressed copy is this cpio; False if its compression cannot be read here."""
    inc = kbuild / "usr" / "initramfs_inc_data"
    if not inc.is_file():
        raise die(f"the relink did not produce {inc}", "check that the fragments enable CONFIG_BLK_DEV_INITRD=y")
    payload = embedded_payload(inc.read_bytes())
    if payload is None:
        return False
    if payload != cpio:
        raise die(f"the kernel's embedded initramfs ({inc}) is not the current {len(cpio)}-byte cpio",
                  f"remove {kbuild / 'usr'} and run `doit embed` again")
    return True


def relink(ctx: Context) -> None:
    tree = Tree.load(ctx.paths.build).location()
    kbuild = ctx.paths.kbuild
    cpio = CPIO.at(ctx).absolute()
    check_cpio_path(cpio)
    dot_config = kbuild / ".config"
    want = kconfig.quote(str(cpio))
    current = dot_config.read_text(encoding="utf-8")
    # After the first relink of a kernel, its .config already names this cpio (its path never changes): then
    # it is left alone. Rewriting it would only make it newer than kbuild's include/config/auto.conf, so make
    # would run syncconfig again, and olddefconfig would write the same file: seconds of every program edit.
    named = kconfig.parse_config(current).get(kconfig.INITRAMFS_SOURCE) == want
    if not named:
        fsutil.atomic_write(dot_config, kconfig.set_option(current, kconfig.INITRAMFS_SOURCE, want))
    remove_initramfs_outputs(kbuild)

    # the same CC as the kernel stage: kbuild recompiles everything when a command line changes
    ctx.arch.require_compiler()
    compiling = compilecache.for_context(ctx)
    cc = compiling.kbuild_vars(ctx.arch)
    env = compiling.environ(make_env(ctx.profile.kernel, tree, kbuild))
    log = ctx.paths.logs / "embed.log"
    fsutil.atomic_write(log, "")
    if not named:
        run(make_cmd(tree, kbuild, "olddefconfig", jobs=ctx.jobs, make_vars=cc), env=env, log=log,
            what="make olddefconfig", hint=f"see {log}")
        got = kconfig.parse_config(dot_config.read_text(encoding="utf-8")).get(kconfig.INITRAMFS_SOURCE)
        if got != want:
            raise die(f"{kconfig.INITRAMFS_SOURCE} did not hold in {dot_config}: became {kconfig.describe(got)}",
                      "add CONFIG_BLK_DEV_INITRD=y to a fragment (configs/fragments/initramfs.config does)")
    start = time.monotonic()
    stream_make(make_cmd(tree, kbuild, ctx.arch.image_target, "vmlinux", jobs=compiling.jobs(ctx.jobs), make_vars=cc),
                env=env, log=log,
                what="relink with the initramfs", hint=f"the whole output is in {log}")
    verified = verify_embedded(kbuild, cpio.read_bytes())
    if ctx.profile.kernel.image == "vmlinux" and not has_pvh_entry((kbuild / "vmlinux").read_bytes()):
        raise die(f'{ctx.profile.path.name} boots vmlinux ([kernel] image = "vmlinux"), but {kbuild / "vmlinux"} '
                  "has no PVH entry note, so QEMU cannot start it",
                  "add the pvh fragment (CONFIG_PVH=y) to [kernel] fragments, or boot the bzImage")
    image = image_output(ctx).at(ctx)
    fsutil.atomic_copy(kbuild / "vmlinux", VMLINUX.at(ctx))
    fsutil.atomic_copy(kbuild / ctx.arch.image, image)
    print(f"embed: relinked in {time.monotonic() - start:.1f}s, {image.name} {image.stat().st_size} B"
          + ("" if verified else " (embedded initramfs compressed in a format not checked here)"))


# Not kbuild/.config nor kbuild/vmlinux: this stage rewrites them itself.
STAGE = Stage("embed", "Embed the initramfs via CONFIG_INITRAMFS_SOURCE and relink the kernel.", relink,
              needs=("patch", "kernel", "initramfs"), outputs=(VMLINUX, *IMAGES.values()),
              tools=("gcc", "binutils", "make"), env=True,
              recipe=("tinyuki.toolchain.kbuild", "tinyuki.formats.kconfig", "tinyuki.formats.elf"),
              cache=True)
