"""The real thing: Debian's kernel tarball from a local mirror, verified, built, booted.

A local HTTP server on 127.0.0.1 plays kernel.org: it serves Debian's
linux-source-6.1 tarball and a detached signature over the *uncompressed* tar,
made by a key generated for this test, just as kernel.org signs its releases.
The pipeline fetches, verifies, extracts, configures, builds a real kernel,
packs the program, embeds it, emits the UKI, and boots both the kernel and the
UKI in QEMU. One build (tests/e2e/conftest.py) serves every e2e test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, TARBALL, doit
from tests.helpers.doit import ran
from tinyuki.util.fs import read_json, sha256_file

MARKER = "tinyuki: init started"

pytestmark = pytest.mark.skipif(
    not TARBALL.exists(), reason=f"{TARBALL} missing: scripts/setup.sh installs linux-source-6.1"
)


def test_every_artifact_is_in_the_manifest(build: dict[str, Path]) -> None:
    manifest = read_json(build["build"] / "manifest.json")
    text = str(manifest)
    for name in ("bzImage", "vmlinux", "initramfs.cpio", "initrd.img", "tinyuki.efi", "kernel.config"):
        assert name in text
    for path in ("bzImage", "tinyuki.efi", "initrd.img", "vmlinux"):
        f = build["build"] / path
        assert f.exists() and sha256_file(f) in text


def test_source_was_signature_verified(build: dict[str, Path], mirror: dict[str, str]) -> None:
    source = read_json(build["build"] / "source.json")
    assert source["sha256"] == sha256_file(TARBALL)
    assert any(mirror["fingerprint"] in t for t in source["trust"])
    assert Path(source["path"]).is_relative_to(build["cache"])


def test_config_kept_every_requested_option(build: dict[str, Path]) -> None:
    config = (build["build"] / "kernel.config").read_text()
    for opt in ("CONFIG_64BIT=y", "CONFIG_VIRTIO_BLK=y", "CONFIG_EFI_STUB=y", "CONFIG_CC_OPTIMIZE_FOR_SIZE=y"):
        assert opt in config


def test_boot_runs_the_program_and_reads_the_disk(build: dict[str, Path]) -> None:
    disk = build["top"] / "disk.img"
    payload = b"TINYUKI-DISK-PAYLOAD-0123456789"
    disk.write_bytes(payload + bytes(1024 * 1024 - len(payload)))
    out = doit(build, ["boot", f"disk={disk}", "accel=tcg"])
    assert MARKER in out
    # the program prints the disk's first bytes as a hexdump, 16 to a line
    assert "|TINYUKI-DISK-PAY|" in out and "|LOAD-0123456789" in out
    assert "boot" in out.lower() and " s" in out  # the reported boot time


def test_uki_boots_through_ovmf(build: dict[str, Path]) -> None:
    if not Path("/usr/share/OVMF/OVMF_CODE_4M.fd").exists():
        pytest.skip("OVMF missing: scripts/setup.sh installs ovmf")
    out = doit(build, ["boot", "uki=1", "accel=tcg"])
    assert MARKER in out


def test_second_run_does_nothing(build: dict[str, Path]) -> None:
    before = sha256_file(build["build"] / "tinyuki.efi")
    out = doit(build, [])
    assert "kernel.log" not in out
    # the summary always prints
    assert [t for t in ran(out) if t != "summary"] == [], f"a task ran in a no-change run:\n{out}"
    assert sha256_file(build["build"] / "tinyuki.efi") == before


def test_debian_profile_verifies_with_dpkg(build: dict[str, Path]) -> None:
    """The default profile's trust path (dpkg + recorded hash), on the same shared cache."""
    if shutil.which("dpkg") is None:
        pytest.skip("not a Debian system")
    paths = dict(build, profile=ROOT / "configs" / "profiles" / "debian.toml", build=build["top"] / "debian")
    doit(paths, ["verify", "extract"])
    source = read_json(paths["build"] / "source.json")
    assert source["package"] == "linux-source-6.1"
    assert source["package_version"]
    # same tarball, same shared tree: extract did not unpack it again
    assert read_json(paths["build"] / "extracted.json")["tree"] == read_json(build["build"] / "extracted.json")["tree"]
