"""embed: the kernel with the program's initramfs inside (CONFIG_INITRAMFS_SOURCE), linked once.

The kernel stage's .config already names kbuild.KBUILD_CPIO, so no kconfig run
is ever needed here: this stage puts the program's cpio there and relinks
(usr/ and the final link: seconds, not minutes). When the kernel stage has
just built the kernel, it linked it with this very cpio: then nothing is
linked again, the link is checked and copied. kbuild decides whether to
rebuild its copy of the initramfs by mtime, and the initramfs stage may give
every build of the cpio the same fixed mtime, so that copy is deleted before
every relink; the result is then compared with the cpio, so a stale program
can never ship.

With [kernel] initramfs = "initrd" the kernel embeds kbuild's default
initramfs instead (a placeholder with /dev/console): it then does not depend
on the program at all, which comes as an external initrd (initrd.img beside a
-kernel boot, the UKI's .initrd section), so editing it never relinks.
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
from tinyuki.tasks.initramfs import CPIO, INITRD
from tinyuki.toolchain.kbuild import (
    KBUILD_CPIO,
    embedded_payload,
    make_cmd,
    make_env,
    placeholder_cpio,
    put_cpio,
    stream_make,
)
from tinyuki.util import fs as fsutil

# The kernel with the initramfs inside: these are what boots. The image is the
# architecture's own, under its own name: bzImage (x86_64), Image (arm64).
VMLINUX = Output("vmlinux", manifest="vmlinux")
IMAGES = {a.name: Output(a.image_name, manifest=a.image_name, arch=a.name) for a in ARCHES.values()}
# [kernel] image = "vmlinuz.efi": the EFI zboot image (arm64), built beside the Image it compresses.
ZBOOT_NAME = "vmlinuz.efi"
ZBOOT = Output(ZBOOT_NAME, manifest=ZBOOT_NAME, image=ZBOOT_NAME)


def image_output(ctx: Context) -> Output:
    """The bootable image this profile's build writes (bzImage, Image): what QEMU's -kernel starts."""
    return IMAGES[ctx.arch.name]


def efi_image_output(ctx: Context) -> Output:
    """The image the UKI carries: the architecture's own, or the EFI zboot image when the profile asks for it."""
    return ZBOOT if ctx.profile.kernel.image == ZBOOT_NAME else image_output(ctx)


def zboot_image(ctx: Context, config: dict[str, str]) -> str | None:
    """Where kbuild writes the EFI zboot image when the profile packs it, else None; checked against the parsed
    .config first, as kbuild would otherwise build a zboot image for a kernel configured without it."""
    if ctx.profile.kernel.image != ZBOOT_NAME:
        return None
    if ctx.arch.efi_zboot is None:
        raise die(f"[kernel] image = \"{ZBOOT_NAME}\" has no meaning for {ctx.arch.name}",
                  f"use one of: {', '.join(ctx.arch.images)}")
    if config.get("CONFIG_EFI_ZBOOT") != "y":
        raise die(f'{ctx.profile.path.name} packs {ZBOOT_NAME} ([kernel] image = "{ZBOOT_NAME}"), but the kernel '
                  "is configured without CONFIG_EFI_ZBOOT", 'add the "zboot" fragment to [kernel] fragments, or '
                  'set [kernel] image = "auto" to pack the uncompressed Image')
    return ctx.arch.efi_zboot


def zboot_fresh(kbuild: Path, zboot: str, image: str) -> bool:
    """Whether kbuild's zboot image was made from its current image (make writes it after the image)."""
    try:
        return (kbuild / zboot).stat().st_mtime_ns >= (kbuild / image).stat().st_mtime_ns
    except FileNotFoundError:
        return False


def embeds_program(ctx: Context) -> bool:
    """Whether the kernel carries the program ([kernel] initramfs = "embedded") or only a placeholder ("initrd")."""
    return ctx.profile.kernel.initramfs == "embedded"


def program_cpio(ctx: Context) -> bytes:
    cpio = CPIO.at(ctx)
    try:
        return cpio.read_bytes()
    except FileNotFoundError:
        raise die(f"the initramfs {cpio} does not exist",
                  "run `doit initramfs` first (or the whole pipeline)") from None


def already_linked(kbuild: Path, image: str, cpio: bytes) -> bool:
    """Whether kbuild's vmlinux and image were linked after its copy of the initramfs was made, and that copy is
    `cpio` (read back through its compression: one that cannot be read here is always relinked)."""
    inc, vmlinux, img = kbuild / "usr" / "initramfs_inc_data", kbuild / "vmlinux", kbuild / image
    try:
        made, linked, packed = inc.stat().st_mtime_ns, vmlinux.stat().st_mtime_ns, img.stat().st_mtime_ns
        data = inc.read_bytes()
    except FileNotFoundError:
        return False
    return made <= linked <= packed and embedded_payload(data) == cpio


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
    dot_config = kbuild / ".config"
    text = dot_config.read_text(encoding="utf-8")
    config = kconfig.parse_config(text)
    if config.get("CONFIG_BLK_DEV_INITRD") != "y":
        raise die(f"the kernel has no initramfs support: CONFIG_BLK_DEV_INITRD is not set in {dot_config}",
                  "add CONFIG_BLK_DEV_INITRD=y to a fragment (configs/fragments/initramfs.config does)")
    # The kernel stage wrote it naming KBUILD_CPIO; a .config changed since (by hand, by an older tinyuki) is
    # set back, and make's syncconfig takes it in before the relink.
    repaired = config.get(kconfig.INITRAMFS_SOURCE) != kconfig.quote(KBUILD_CPIO)
    if repaired:
        fsutil.atomic_write(dot_config, kconfig.set_option(text, kconfig.INITRAMFS_SOURCE, kconfig.quote(KBUILD_CPIO)))
    embedded = embeds_program(ctx)
    cpio = program_cpio(ctx) if embedded else placeholder_cpio(ctx.profile.kernel.source_date_epoch)
    start = time.monotonic()
    zboot = zboot_image(ctx, config)
    linked = not repaired and already_linked(kbuild, ctx.arch.image, cpio) and \
        (zboot is None or zboot_fresh(kbuild, zboot, ctx.arch.image))
    if not linked:
        put_cpio(kbuild, cpio)
        # the same CC and environment as the kernel stage: kbuild recompiles everything when a command line changes
        ctx.arch.require_compiler()
        compiling = compilecache.for_context(ctx)
        env = compiling.environ(make_env(ctx.profile.kernel, tree, kbuild))
        log = ctx.paths.logs / "embed.log"
        fsutil.atomic_write(log, "")
        stream_make(make_cmd(tree, kbuild, ctx.arch.image_target, "vmlinux", *([ZBOOT_NAME] if zboot else []),
                             jobs=compiling.jobs(ctx.jobs), make_vars=compiling.kbuild_vars(ctx.arch)),
                    env=env, log=log, what="relink" + (" with the initramfs" if embedded else ""),
                    hint=f"the whole output is in {log}")
        # make's syncconfig rewrote .config (it had to, after a repair): the cpio's name must have held
        if kconfig.parse_config(dot_config.read_text(encoding="utf-8")).get(kconfig.INITRAMFS_SOURCE) != \
                kconfig.quote(KBUILD_CPIO):
            raise die(f"{kconfig.INITRAMFS_SOURCE} did not hold in {dot_config}", f"see {log}")
    verified = verify_embedded(kbuild, cpio)
    if ctx.profile.kernel.image == "vmlinux" and not has_pvh_entry((kbuild / "vmlinux").read_bytes()):
        raise die(f'{ctx.profile.path.name} boots vmlinux ([kernel] image = "vmlinux"), but {kbuild / "vmlinux"} '
                  "has no PVH entry note, so QEMU cannot start it",
                  "add the pvh fragment (CONFIG_PVH=y) to [kernel] fragments, or boot the bzImage")
    image = image_output(ctx).at(ctx)
    fsutil.atomic_copy(kbuild / "vmlinux", VMLINUX.at(ctx))
    fsutil.atomic_copy(kbuild / ctx.arch.image, image)
    if zboot is not None:
        fsutil.atomic_copy(kbuild / zboot, ZBOOT.at(ctx))
        print(f"embed: {ZBOOT_NAME} {ZBOOT.at(ctx).stat().st_size} B (the UKI's kernel: [kernel] image)")
    how = "the kernel stage's link carries this cpio" if linked else f"relinked in {time.monotonic() - start:.1f}s"
    what = ("" if embedded else f" (the program comes as the initrd {INITRD.path}: [kernel] initramfs = \"initrd\")")
    print(f"embed: {how}, {image.name} {image.stat().st_size} B{what}"
          + ("" if verified else " (embedded initramfs compressed in a format not checked here)"))


# Not kbuild/.config nor kbuild/vmlinux: this stage rewrites them itself. With [kernel] initramfs = "initrd"
# the program is not in the kernel, so neither its files nor its key are this stage's.
STAGE = Stage("embed", "Embed the initramfs via CONFIG_INITRAMFS_SOURCE (relinking unless the kernel's link has it).",
              relink,
              needs=("patch", "kernel", "initramfs"), needs_if={"initramfs": embeds_program},
              outputs=(VMLINUX, *IMAGES.values(), ZBOOT),
              tools=("gcc", "binutils", "make"), env=True,
              recipe=("tinyuki.toolchain.kbuild", "tinyuki.formats.kconfig", "tinyuki.formats.elf"),
              cache=True)
