"""uki: emit the UKI, systemd's EFI stub carrying the kernel, its command line and os-release (and, for
[kernel] initramfs = "initrd", the program as the .initrd section).

The sections are added with pefile (tinyuki/formats/pe.py) rather than objcopy, so the
image carries the build's epoch instead of the current time and is the same
bytes on every run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tinyuki.config.context import Context
from tinyuki.errors import die
from tinyuki.formats import pe
from tinyuki.secureboot import expected_pcr11
from tinyuki.stage import Output, Stage
from tinyuki.tasks.embed import efi_image_output, embeds_program, image_output
from tinyuki.tasks.initramfs import INITRD
from tinyuki.util import fs as fsutil

UKI = Output("tinyuki.efi", manifest="uki")


def kernel_release(bzimage: bytes, kbuild: Path) -> str | None:
    """`uname -r` of the kernel: from the bzImage header or an uncompressed image's banner, else kbuild's record.

    Both come from the image itself, an input of this stage; kernel.release
    in the build dir is the last resort.
    """
    release = pe.bzimage_release(bzimage) or banner_release(bzimage)
    if release:
        return release
    fallback = kbuild / "include" / "config" / "kernel.release"
    if fallback.is_file():
        return fallback.read_text(encoding="utf-8").strip() or None
    return None


BANNER = re.compile(rb"Linux version (\S+) \(")


def banner_release(image: bytes) -> str | None:
    """The release in the `Linux version 6.1.0 (user@host) ...` banner of an uncompressed kernel (arm64's Image)."""
    m = BANNER.search(image)
    return m.group(1).decode(errors="replace") if m else None


def require_stub(ctx: Context) -> None:
    """The stub exists, or an error saying where each architecture's comes from (before the key reads it)."""
    stub_path = ctx.profile.uki.stub
    if not stub_path.is_file():
        hint = ("install it with `apt-get install systemd-boot-efi`" if ctx.arch.native() else
                f"run `tinyuki doctor --install profile={ctx.profile.path}` (scripts/setup.sh in tinyuki's clone):"
                f" on Debian it downloads systemd-boot-efi for {ctx.arch.name} and unpacks it at {stub_path}"
                f" (nothing gets installed); elsewhere put {ctx.arch.stub_name} there")
        raise die(f"systemd's EFI stub for {ctx.arch.name} is missing: {stub_path}",
                  f"{hint}; or set [uki] stub in the profile")


def write_uki(ctx: Context, initrd: Path | None = None, target: Path | None = None) -> Path:
    """Assemble the UKI from the built kernel and write it atomically; returns its path."""
    require_stub(ctx)
    stub_path = ctx.profile.uki.stub
    stub = stub_path.read_bytes()
    carried = efi_image_output(ctx)
    kernel = carried.at(ctx).read_bytes()
    check_machines(ctx, stub_path, stub, kernel)
    # the release is read from the image -kernel boots (an EFI zboot image carries its banner compressed)
    plain = kernel if carried is image_output(ctx) else image_output(ctx).at(ctx).read_bytes()
    image = pe.build_uki(
        stub,
        kernel,
        cmdline=ctx.profile.uki_cmdline,
        os_release_fields=ctx.profile.uki.os_release,
        uname=kernel_release(plain, ctx.paths.kbuild),
        initrd=initrd.read_bytes() if initrd is not None else None,
        timestamp=ctx.profile.kernel.source_date_epoch,
    )
    out = target or UKI.at(ctx)
    fsutil.atomic_write(out, image)
    print(f"uki: {out} ({len(image)} bytes)")
    return out


def check_machines(ctx: Context, stub_path: Path, stub: bytes, kernel: bytes) -> None:
    """The stub and the kernel's own EFI entry must both be the target's: firmware refuses a foreign one late."""
    want = ctx.arch.pe_machine
    got = pe.pe_machine(stub)
    if got != want:
        what = "not a PE image" if got is None else f"for {pe.machine_name(got)}"
        raise die(f"the EFI stub {stub_path} is {what}, not {ctx.arch.name}'s {pe.machine_name(want)}",
                  f"set [uki] stub to systemd's {ctx.arch.stub_name}, or leave it unset for the architecture's own")
    got = pe.pe_machine(kernel)
    if got is not None and got != want:
        raise die(f"the kernel image {efi_image_output(ctx).at(ctx)} is an EFI application for {pe.machine_name(got)},"
                  f" not {ctx.arch.name}'s {pe.machine_name(want)}", "run `doit embed` to rebuild it for this profile")


def build(ctx: Context) -> None:
    # [kernel] initramfs = "initrd": the program is the UKI's .initrd, which the stub hands to the kernel
    write_uki(ctx, initrd=None if embeds_program(ctx) else INITRD.at(ctx))


def report(ctx: Context) -> dict[str, Any]:
    """For manifest.json: the PCR 11 value the UKI will measure, so a verifier knows it before the machine boots."""
    return {"measured_boot": expected_pcr11(UKI.at(ctx).read_bytes())}


STAGE = Stage("uki", "Assemble the UKI: systemd EFI stub + kernel + cmdline + os-release + uname.", build,
              needs=("embed", "initramfs"), needs_if={"initramfs": lambda ctx: not embeds_program(ctx)},
              outputs=(UKI,),
              tools=("pefile",), recipe=("tinyuki.formats.pe",),
              refresh=require_stub, cache=True, report=report)
