"""The EFI system partition QEMU boots a UKI from: the UKI as the removable-media loader."""

from __future__ import annotations

import os
from pathlib import Path

from tinyuki.util import runner


def make_esp(uki: Path, workdir: Path, log: Path) -> Path:
    """A FAT image with the UKI as the removable-media boot loader EFI/BOOT/BOOTX64.EFI."""
    esp = workdir / "esp.img"
    size_kib = max(2048, (uki.stat().st_size * 5 // 4) // 1024 + 1024)
    runner.run(["mkfs.vfat", "--invariant", "-n", "TINYUKI", "-C", esp, str(size_kib)],
               what="making the EFI system partition", log=log,
               hint="install dosfstools (mkfs.vfat)")
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    runner.run(["mmd", "-i", esp, "::/EFI", "::/EFI/BOOT"], env=env, what="mmd", log=log,
               hint="install mtools")
    runner.run(["mcopy", "-i", esp, uki, "::/EFI/BOOT/BOOTX64.EFI"], env=env, what="mcopy", log=log,
               hint="install mtools")
    return esp
