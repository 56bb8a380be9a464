"""Emit the UKI: systemd's EFI stub carrying the kernel, its command line and os-release.

The sections are added with pefile (tasks/pe.py) rather than objcopy, so the
image carries the build's epoch instead of the current time and is the same
bytes on every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from doit.tools import config_changed

from tasks import fsutil, pe
from tasks.cache import cached
from tasks.context import Context
from tasks.errors import die


def kernel_release(bzimage: bytes, kbuild: Path) -> str | None:
    """`uname -r` of the kernel: from the bzImage header, else from kbuild's kernel.release."""
    release = pe.bzimage_release(bzimage)
    if release:
        return release
    fallback = kbuild / "include" / "config" / "kernel.release"
    if fallback.is_file():
        return fallback.read_text(encoding="utf-8").strip() or None
    return None


def settings(ctx: Context) -> dict[str, Any]:
    """Everything besides the kernel and stub files that ends up in the UKI's bytes."""
    return {
        "cmdline": ctx.profile.kernel.cmdline,
        "os_release": [list(kv) for kv in ctx.profile.uki.os_release],
        "source_date_epoch": ctx.profile.kernel.source_date_epoch,
    }


def write_uki(ctx: Context, initrd: Path | None = None, target: Path | None = None) -> Path:
    """Assemble the UKI from the built kernel and write it atomically; returns its path."""
    stub_path = ctx.profile.uki.stub
    if not stub_path.is_file():
        raise die(f"systemd's EFI stub is missing: {stub_path}",
                  "install it with `apt-get install systemd-boot-efi`, or set [uki] stub in the profile")
    kernel = ctx.paths.bzimage.read_bytes()
    image = pe.build_uki(
        stub_path.read_bytes(),
        kernel,
        cmdline=ctx.profile.kernel.cmdline,
        os_release_fields=ctx.profile.uki.os_release,
        uname=kernel_release(kernel, ctx.paths.kbuild),
        initrd=initrd.read_bytes() if initrd is not None else None,
        timestamp=ctx.profile.kernel.source_date_epoch,
    )
    out = target or ctx.paths.uki
    fsutil.atomic_write(out, image)
    print(f"uki: {out} ({len(image)} bytes)")
    return out


def task(ctx: Context) -> dict[str, Any]:
    return {
        "actions": [cached(ctx, "uki", lambda: write_uki(ctx))],
        "file_dep": [str(ctx.paths.bzimage), str(ctx.profile.uki.stub)],
        "targets": [str(ctx.paths.uki)],
        "uptodate": [config_changed(settings(ctx))],
        "clean": True,
        "verbosity": 2,
    }
