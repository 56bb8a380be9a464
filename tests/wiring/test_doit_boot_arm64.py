"""`doit boot` for an arm64 profile, through the real doit command line, with a fake qemu-system-aarch64.

The fake records the arguments it was started with and plays a console, so
what is checked is the QEMU command doit builds (direct, UKI through AAVMF,
stick), the accelerator it picks on this host, and the error secureboot=1
gets — never a traceback. A missing AAVMF is tests/unit/test_boot_arm64.py's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.doit import environ, output, run_dodo, variables
from tests.helpers.fakeqemu import fake_qemu

MARKER = "hello: started"
PROFILE = f"""
[source]
urls = ["https://example.org/linux-6.1.tar.xz"]
sha256 = "{"0" * 64}"

[kernel]
arch = "arm64"
fragments = ["base"]

[init]
marker = "{MARKER}"

[boot]
timeout = 20
{{boot}}
"""
CONSOLE = ["[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x411fd070]",
           "[    0.270215] Run /init as init process", MARKER, "[    0.294339] reboot: Power down"]


def doit_boot(tmp_path: Path, *args: str, boot: str = "") -> tuple[int, str, list[str]]:
    """Run `doit boot ARGS` on an arm64 profile; returns doit's exit code, its output and QEMU's argv."""
    bin_dir, argv = tmp_path / "bin", tmp_path / "argv"
    fake_qemu(bin_dir, CONSOLE, name="qemu-system-aarch64", argv=argv)
    profile = tmp_path / "arm.toml"
    profile.write_text(PROFILE.format(boot=boot))
    build = tmp_path / "b"
    build.mkdir(exist_ok=True)
    (build / "Image").write_bytes(b"MZ not a real arm64 kernel")
    (build / "tinyuki.efi").write_bytes(b"MZ not a real UKI" + bytes(4096))
    (build / "tinyuki.img").write_bytes(bytes(1 << 20))
    env = environ("TINYUKI_*", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    # -s: boot only, with the stand-in artifacts (no build of the real ones first)
    proc = run_dodo("-s", "boot", *args, *variables(profile=profile, build_dir=build, cache_dir=tmp_path / "c"),
                    env=env, timeout=120)
    got = argv.read_text().splitlines() if argv.is_file() else []
    return proc.returncode, output(proc), got


def after(cmd: list[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, c in enumerate(cmd) if c == flag]


@pytest.mark.skipif(os.uname().machine == "aarch64", reason="on an arm64 host KVM is probed, as on x86_64")
def test_the_image_boots_on_virt_under_tcg_without_a_kvm_probe(tmp_path: Path) -> None:
    code, out, cmd = doit_boot(tmp_path)
    assert code == 0 and "boot: ok" in out, out
    assert f"TCG: arm64 guest on an {os.uname().machine} host" in out
    assert cmd[:4] == ["-M", "virt", "-cpu", "cortex-a57"] and after(cmd, "-accel") == ["tcg"]
    assert after(cmd, "-append") == ["console=ttyAMA0 panic=-1"]
    assert after(cmd, "-kernel") == [str(tmp_path / "b" / "Image")]
    assert "(Image: no decompressor)" in out
    assert not (tmp_path / "c" / "kvm-probe.json").exists()


def test_the_uki_boots_through_aavmf(tmp_path: Path) -> None:
    code, out, cmd = doit_boot(tmp_path, "uki=1", "accel=tcg")
    assert code == 0 and "the UKI through AAVMF (a virtio disk) on virt" in out, out
    assert after(cmd, "-M") == ["virt,acpi=off"] and after(cmd, "-boot") == ["menu=on,splash-time=0"]
    drives = after(cmd, "-drive")
    assert drives[0].endswith("file=/usr/share/AAVMF/AAVMF_CODE.fd") and drives[1].endswith("/AAVMF_VARS.fd")
    assert after(cmd, "-device") == ["virtio-blk-device,drive=esp,bootindex=0"]


def test_the_stick_boots_through_aavmf_as_usb_storage(tmp_path: Path) -> None:
    code, out, cmd = doit_boot(tmp_path, "stick=1", "accel=tcg")
    assert code == 0 and "tinyuki.img as a USB stick through AAVMF on virt" in out, out
    assert after(cmd, "-device") == ["qemu-xhci,id=xhci", "usb-storage,bus=xhci.0,drive=esp,removable=on,bootindex=0"]
    assert any(d.startswith(f"file={tmp_path / 'b' / 'tinyuki.img'},") for d in after(cmd, "-drive"))


def test_secureboot_is_refused_in_words(tmp_path: Path) -> None:
    code, out, cmd = doit_boot(tmp_path, "secureboot=1")
    assert code != 0 and "secureboot=1 is not supported for arm64" in out and "Traceback" not in out, out
    assert cmd == []



def test_an_efi_zboot_image_is_refused_for_a_direct_boot_before_qemu_starts(tmp_path: Path) -> None:
    """QEMU's -kernel on virt waits silently with a vmlinuz.efi: one error saying what boots it instead."""
    zboot = tmp_path / "vmlinuz.efi"
    zboot.write_bytes(b"MZ\0\0zimg" + bytes(4096))
    code, out, cmd = doit_boot(tmp_path, f"kernel={zboot}", "accel=tcg")
    assert code != 0 and cmd == [], out
    assert f"{zboot} is an EFI zboot image: QEMU's -kernel cannot start it" in out
    assert "`doit boot uki=1`" in out and "Traceback" not in out
