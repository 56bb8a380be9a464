"""uki: emit the UKI, systemd's EFI stub carrying the kernel, its command line and os-release.

The sections are added with pefile (tinyuki/formats/pe.py) rather than objcopy, so the
image carries the build's epoch instead of the current time and is the same
bytes on every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.embed import IMAGE
from tinyuki.config.context import Context
from tinyuki.errors import die
from tinyuki.formats import pe
from tinyuki.secureboot import expected_pcr11
from tinyuki.stage import Output, Stage
from tinyuki.util import fs as fsutil

UKI = Output("tinyuki.efi", manifest="uki")


def kernel_release(bzimage: bytes, kbuild: Path) -> str | None:
    """`uname -r` of the kernel: from the bzImage header, else from kbuild's kernel.release."""
    release = pe.bzimage_release(bzimage)
    if release:
        return release
    fallback = kbuild / "include" / "config" / "kernel.release"
    if fallback.is_file():
        return fallback.read_text(encoding="utf-8").strip() or None
    return None


def write_uki(ctx: Context, initrd: Path | None = None, target: Path | None = None) -> Path:
    """Assemble the UKI from the built kernel and write it atomically; returns its path."""
    stub_path = ctx.profile.uki.stub
    if not stub_path.is_file():
        raise die(f"systemd's EFI stub is missing: {stub_path}",
                  "install it with `apt-get install systemd-boot-efi`, or set [uki] stub in the profile")
    kernel = IMAGE.at(ctx).read_bytes()
    image = pe.build_uki(
        stub_path.read_bytes(),
        kernel,
        cmdline=ctx.profile.kernel.cmdline,
        os_release_fields=ctx.profile.uki.os_release,
        uname=kernel_release(kernel, ctx.paths.kbuild),
        initrd=initrd.read_bytes() if initrd is not None else None,
        timestamp=ctx.profile.kernel.source_date_epoch,
    )
    out = target or UKI.at(ctx)
    fsutil.atomic_write(out, image)
    print(f"uki: {out} ({len(image)} bytes)")
    return out


def build(ctx: Context) -> None:
    write_uki(ctx)


def report(ctx: Context) -> dict[str, Any]:
    """For manifest.json: the PCR 11 value the UKI will measure, so a verifier knows it before the machine boots."""
    return {"measured_boot": expected_pcr11(UKI.at(ctx).read_bytes())}


STAGE = Stage("uki", "Assemble the UKI: systemd EFI stub + kernel + cmdline + os-release + uname.", build,
              needs=("embed",), outputs=(UKI,),
              tools=("pefile",), recipe=("tinyuki.formats.pe",),
              cache=True, report=report)
