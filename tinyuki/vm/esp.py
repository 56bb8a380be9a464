"""The EFI system partition QEMU boots a UKI from: the UKI as the removable-media loader.

The loader's name is the architecture's (tinyuki/arch.py's efi_boot_file):
BOOTX64.EFI for OVMF, BOOTAA64.EFI for AAVMF; a firmware looks for no other.
"""

from __future__ import annotations

import os
from pathlib import Path

from tinyuki.util import runner

BOOT_FILE = "BOOTX64.EFI"


def make_esp(uki: Path, workdir: Path, log: Path, boot_file: str = BOOT_FILE) -> Path:
    """A FAT image with the UKI as the removable-media boot loader EFI/BOOT/<boot_file> (BOOTX64.EFI)."""
    if "/" in boot_file or not boot_file.upper().endswith(".EFI"):
        raise ValueError(f"the removable-media loader is a file name like BOOTX64.EFI, not {boot_file!r}")
    esp = workdir / "esp.img"
    size_kib = max(2048, (uki.stat().st_size * 5 // 4) // 1024 + 1024)
    runner.run(["mkfs.vfat", "--invariant", "-n", "TINYUKI", "-C", esp, str(size_kib)],
               what="making the EFI system partition", log=log,
               hint="install dosfstools (mkfs.vfat)")
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    runner.run(["mmd", "-i", esp, "::/EFI", "::/EFI/BOOT"], env=env, what="mmd", log=log,
               hint="install mtools")
    runner.run(["mcopy", "-i", esp, uki, f"::/EFI/BOOT/{boot_file}"], env=env, what="mcopy", log=log,
               hint="install mtools")
    return esp
