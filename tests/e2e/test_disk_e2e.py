"""tinyuki.img from the real build (tests/e2e/conftest.py's session build): read by real tools, booted as a stick.

The shared build already ran the whole pipeline, the disk stage included; only
the packaging is checked and booted here. OVMF boots the image from a USB
mass-storage device on an xHCI controller, as a PC boots a stick, and the
program must run; with bus=virtio the kernel also sees the image and the
program prints its first bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import TARBALL, doit
from tinyuki.util.fs import read_json, sha256_file

MARKER = "tinyuki: init started"
ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}

pytestmark = pytest.mark.skipif(
    not TARBALL.exists(), reason=f"{TARBALL} missing: scripts/setup.sh installs linux-source-6.1"
)


def read(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_the_image_holds_the_uki_and_every_reader_accepts_it(build: dict[str, Path]) -> None:
    image = build["build"] / "tinyuki.img"
    manifest = read_json(build["build"] / "manifest.json")
    assert manifest["artifacts"]["disk"]["sha256"] == sha256_file(image)
    table = json.loads(read(["sfdisk", "-J", str(image)]))["partitiontable"]
    assert table["label"] == "gpt"
    (esp,) = table["partitions"]
    assert esp["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    assert "No problems found" in read(["sgdisk", "-v", str(image)])
    offset = esp["start"] * 512
    part = build["top"] / "esp.part"
    with open(image, "rb") as f:
        f.seek(offset)
        part.write_bytes(f.read(esp["size"] * 512))
    read(["fsck.fat", "-n", str(part)])
    assert "BOOTX64  EFI" in read(["mdir", "-i", f"{image}@@{offset}", "::/EFI/BOOT"])
    copy = build["top"] / "BOOTX64.EFI"
    read(["mcopy", "-n", "-i", f"{image}@@{offset}", "::/EFI/BOOT/BOOTX64.EFI", str(copy)])
    assert sha256_file(copy) == sha256_file(build["build"] / "tinyuki.efi")


def test_the_image_boots_as_a_usb_stick(build: dict[str, Path]) -> None:
    out = doit(build, ["boot", "stick=1", "accel=tcg"])
    assert MARKER in out
    assert "qemu-xhci" in out and "usb-storage" in out  # the echoed QEMU command line
    assert "USB(" in out  # OVMF's boot line names the USB device path it loaded the UKI from


def test_the_image_as_a_virtio_disk_is_read_by_the_program(build: dict[str, Path]) -> None:
    out = doit(build, ["boot", "stick=1", "bus=virtio", "accel=tcg"])
    assert MARKER in out and "init: first 64 bytes of /dev/vda:" in out
