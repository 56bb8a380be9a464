"""arm64 end to end on Linux 6.12, cross-built on this host: `doit repro` builds arm64-6.12 twice, then both boot.

The two builds of `doit repro` (other paths, umask, time zone, locale, -j,
user, host name and clock; one without the compile cache, one with it) are
the arm64 e2e build: from Debian's verified linux-source-6.12 through the
cross-compiled kernel, the program, the UKI with systemd's arm64 stub and the
stick image. Build A then boots under TCG on QEMU's virt machine: the Image
directly, the UKI through AAVMF, and the stick as a USB disk, and each time
the program's marker must appear. Cost: two arm64 kernel builds (about 6
minutes each on 2 cores) and three boots. The arm64 shape on 6.1 (the arm64
profile) differs only in [source]; its bytes are checked by scripts/same-bytes.sh.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, doit
from tinyuki import arch
from tinyuki.formats import pe
from tinyuki.util.fs import read_json

TARBALL_612 = Path("/usr/src/linux-source-6.12.tar.xz")
pytestmark = pytest.mark.skipif(not TARBALL_612.exists(), reason=f"{TARBALL_612} missing: scripts/setup.sh installs it")

MARKER = "tinyuki: init started"
ARM64 = arch.ARCHES["arm64"]


@pytest.fixture(scope="module")
def arm64(tmp_path_factory: pytest.TempPathFactory, arm64_cache: Path) -> dict[str, Path]:
    """The arm64-6.12 profile built twice by `doit repro`; returns build A's paths for the boots."""
    top = tmp_path_factory.mktemp("arm64")
    paths = {"profile": ROOT / "configs" / "profiles" / "arm64-6.12.toml", "build": top / "build",
             "cache": arm64_cache, "top": top}
    repro = top / "repro"
    out = doit(paths, ["repro", f"repro_dir={repro}"], timeout=3600)
    (top / "repro.out").write_text(out)
    return {**paths, "build": repro / "a", "b": repro / "b-with-a-much-longer-path" / "second-build",
            "repro_out": top / "repro.out"}


def test_two_arm64_builds_in_different_surroundings_are_bit_identical(arm64: dict[str, Path]) -> None:
    out = arm64["repro_out"].read_text()
    assert "reproducible: all 8 artifacts are bit-identical" in out, out[-4000:]
    a = read_json(arm64["build"] / "manifest.json")
    b = read_json(arm64["b"] / "manifest.json")
    assert a["artifacts"] == b["artifacts"]
    assert a["arch"] == "arm64"
    assert a["inputs"]["source"]["filename"] == "linux-source-6.12.tar.xz", a["inputs"]["source"]
    assert {"Image", "vmlinux", "uki", "disk"} <= set(a["artifacts"]) and "bzImage" not in a["artifacts"]


def test_every_arm64_artifact_is_for_arm64(arm64: dict[str, Path]) -> None:
    build = arm64["build"]
    image = (build / "Image").read_bytes()
    assert image[0x38:0x3C] == b"ARM\x64"  # the arm64 Image header's magic
    assert pe.pe_machine(image) == 0xAA64  # and its own EFI entry (CONFIG_EFI_STUB)
    init = (build / "init" / "init").read_bytes()
    assert init[:4] == b"\x7fELF" and struct.unpack_from("<H", init, 18)[0] == ARM64.elf_machine
    uki = (build / "tinyuki.efi").read_bytes()
    assert pe.pe_machine(uki) == 0xAA64
    sections = pe.read_sections(uki)
    assert sections[".linux"][:len(image)] == image
    assert pe.layout_problems(uki) == []
    assert b"console=ttyAMA0" in sections[".cmdline"]
    config = (build / "kernel.config").read_text()
    assert "CONFIG_ARM64=y" in config and "CONFIG_SERIAL_AMBA_PL011_CONSOLE=y" in config


def test_arm64_image_boots_directly(arm64: dict[str, Path]) -> None:
    out = doit(arm64, ["boot"])
    assert MARKER in out and "boot: ok" in out, out[-3000:]


def test_arm64_uki_boots_through_aavmf(arm64: dict[str, Path]) -> None:
    out = doit(arm64, ["boot", "uki=1"])
    assert MARKER in out and "boot: ok" in out, out[-3000:]


def test_arm64_stick_boots_through_aavmf(arm64: dict[str, Path]) -> None:
    out = doit(arm64, ["boot", "stick=1"])
    assert MARKER in out and "boot: ok" in out, out[-3000:]
