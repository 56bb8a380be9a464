"""`doit boot` and the benchmarks for an arm64 profile: what they refuse, what they boot, what they report.

No kernel and no VM: the profile is the shipped configs/profiles/arm64.toml,
the build dir a temporary one with stand-in files.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import boot as bboot
from bench import report
from bench import size as bsize
from tinyuki.cli import boot as cboot
from tinyuki.config.context import make_context
from tinyuki.errors import TinyukiError
from tinyuki.vm import qemu
from tinyuki.vm.esp import make_esp

ROOT = Path(__file__).resolve().parents[2]
ARM_CONFIG = "CONFIG_EFI=y\nCONFIG_EFI_STUB=y\nCONFIG_VIRTIO_PCI=y\n"


def test_the_arm64_profile_resolves_what_boot_needs(tmp_path: Path) -> None:
    ctx = make_context("arm64", build_dir=str(tmp_path))
    b = ctx.profile.boot
    assert ctx.arch.name == "arm64" and b.machine == "virt"
    assert str(b.ovmf_code).endswith("AAVMF_CODE.fd") and str(b.ovmf_vars).endswith("AAVMF_VARS.fd")
    assert cboot.profile_image(ctx) == tmp_path / "Image"


def test_secureboot_on_arm64_is_refused_with_what_to_do_instead(tmp_path: Path) -> None:
    with pytest.raises(TinyukiError) as e:
        cboot.refuse_secureboot(make_context("arm64", build_dir=str(tmp_path)))
    assert "secureboot=1 is not supported for arm64" in e.value.message
    assert "uki=1" in e.value.hint and "x86_64 profile" in e.value.hint
    cboot.refuse_secureboot(make_context("debian", build_dir=str(tmp_path)))  # x86_64: goes on as before


def test_missing_aavmf_names_its_package(tmp_path: Path) -> None:
    ctx = make_context("arm64", build_dir=str(tmp_path))
    code, template = tmp_path / "AAVMF_CODE.fd", tmp_path / "AAVMF_VARS.fd"
    template.write_bytes(bytes(64))
    with pytest.raises(TinyukiError) as e:
        cboot.require_firmware(ctx, code, template)
    assert e.value.message == (f"AAVMF firmware {code} does not exist (arm64's UEFI firmware, from Debian's"
                               " qemu-efi-aarch64)")
    assert "apt-get install qemu-efi-aarch64" in e.value.hint and "scripts/setup.sh installs it" in e.value.hint
    code.write_bytes(bytes(64))
    cboot.require_firmware(ctx, code, template)


def _ctx(accel: str) -> SimpleNamespace:
    return SimpleNamespace(profile=SimpleNamespace(boot=SimpleNamespace(accel=accel), path=Path("arm64.toml")))


def test_a_foreign_guest_gets_tcg_without_a_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = qemu.BootSpec(machine="virt", memory="128M", accel="tcg", kernel=Path("Image"), arch="arm64")
    monkeypatch.setattr(qemu, "foreign_guest", lambda guest, host=None: f"TCG: {guest} guest on an x86_64 host")

    def no_probe(*_a: object, **_k: object) -> None:
        raise AssertionError("a foreign guest is never probed")

    monkeypatch.setattr(cboot.vmrun, "remembered_probe", no_probe)
    monkeypatch.setattr(cboot, "get_var", lambda _name: None)
    assert cboot.choose_accel(_ctx("auto"), spec) == ("tcg", "TCG: arm64 guest on an x86_64 host")  # type: ignore[arg-type]
    assert cboot.choose_accel(_ctx("tcg"), spec)[0] == "tcg"  # type: ignore[arg-type]
    with pytest.raises(TinyukiError) as e:
        cboot.choose_accel(_ctx("kvm"), spec)  # type: ignore[arg-type]
    assert "arm64 guest on an x86_64 host" in e.value.message and "accel=tcg" in e.value.hint


def test_the_esp_holds_the_architecture_s_loader(tmp_path: Path) -> None:
    uki = tmp_path / "tinyuki.efi"
    uki.write_bytes(b"MZ" + bytes(4094))
    esp = make_esp(uki, tmp_path, tmp_path / "esp.log", "BOOTAA64.EFI")
    listing = subprocess.run(["mdir", "-b", "-i", str(esp), "::/EFI/BOOT"], capture_output=True, text=True,
                             env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}, check=True).stdout
    assert "BOOTAA64.EFI" in listing and "BOOTX64.EFI" not in listing
    with pytest.raises(ValueError):
        make_esp(uki, tmp_path, tmp_path / "esp.log", "../x")


# ---------------------------------------------------------------- the benchmarks

def test_bench_boot_cases_for_an_arm64_build(tmp_path: Path) -> None:
    ctx = make_context("arm64", build_dir=str(tmp_path))
    cases = bboot.cases_for(ctx, ARM_CONFIG, default_profile=False)
    assert [(c.name, c.image, c.machine) for c in cases] == [
        ("virt Image", "Image", "virt"), ("UKI via AAVMF (virt, pflash)", "uki", "virt")]
    direct = bboot.spec_for(ctx, cases[0], ARM_CONFIG, 2596098, None, None)
    cmd = qemu.command(direct)
    assert cmd[:5] == ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57"]
    assert cmd[cmd.index("-kernel") + 1] == str(tmp_path / "Image")
    uki = bboot.spec_for(ctx, cases[1], ARM_CONFIG, None, tmp_path / "esp.img", tmp_path / "AAVMF_VARS.fd")
    cmd = qemu.command(uki)
    assert "virt,acpi=off" in cmd and "menu=on,splash-time=0" in cmd
    assert any(a.endswith("file=/usr/share/AAVMF/AAVMF_CODE.fd") for a in cmd)


def test_bench_boot_cases_for_an_efi_zboot_build_boot_the_image_directly(tmp_path: Path) -> None:
    """vmlinuz.efi is the UKI's: QEMU's -kernel cannot start it, so the direct case (the rest's baseline) is the
    Image of the same build, as `doit boot` starts it."""
    ctx = make_context(str(ROOT / "bench" / "profiles" / "arm64-6.12-zboot.toml"), build_dir=str(tmp_path))
    assert ctx.profile.kernel.image == "vmlinuz.efi"
    cases = bboot.cases_for(ctx, ARM_CONFIG, default_profile=False)
    assert [(c.name, c.image, c.rest_baseline) for c in cases] == [
        ("virt Image", "Image", None), ("UKI via AAVMF (virt, pflash)", "uki", "virt Image")]


def test_bench_boot_cases_for_x86_keep_their_names(tmp_path: Path) -> None:
    ctx = make_context("debian", build_dir=str(tmp_path))
    cases = bboot.cases_for(ctx, "CONFIG_EFI_STUB=y\n", default_profile=True)
    assert [c.name for c in cases] == [
        "microvm bzImage", "pc bzImage", "pc bzImage i8042.noaux i8042.nokbd", "microvm bzImage + external initrd",
        "microvm bzImage quiet", "microvm bzImage without tsc_early_khz", "microvm bzImage without nolapic_timer",
        "UKI via OVMF (q35, pflash)",
        "UKI via OVMF (q35, -bios OVMF.fd)"]
    uki = bboot.spec_for(ctx, cases[-2], "", None, tmp_path / "esp.img", tmp_path / "OVMF_VARS.fd")
    cmd = qemu.command(uki)
    assert cmd[:3] == ["qemu-system-x86_64", "-M", "q35"] and "-cpu" not in cmd and "-boot" not in cmd


def test_bench_size_reports_the_arm64_image(tmp_path: Path) -> None:
    arm, x86 = tmp_path / "arm64", tmp_path / "debian"
    for d, image in ((arm, "Image"), (x86, "bzImage")):
        d.mkdir()
        (d / image).write_bytes(bytes(3000 if image == "Image" else 1000))
        (d / "tinyuki.efi").write_bytes(bytes(3100))
    actx = make_context("arm64", build_dir=str(arm))
    dctx = make_context("debian", build_dir=str(x86))
    assert bsize.profile_sizes(make_context("arm64", build_dir=str(x86))) is None  # no Image: not built
    out = bsize.measure([dctx, actx], "debian")
    a, d = out["profiles"]["arm64"], out["profiles"]["debian"]
    assert a["Image"] == 3000 and a["kernel_image"] == "Image" and a["arch"] == "arm64" and a["uki"] == 3100
    assert "bzImage" not in a and a["bzImage_ratio"] is None  # an Image is no bzImage to compare with
    assert d["bzImage"] == 1000 and d["bzImage_ratio"] == 1.0
    assert "arm64" not in out["bloat"]
    md = report.markdown({"size": out})
    assert "3,000 B (2.9 KiB) (Image)" in md and "| 1,000 B " in md and "| kernel image " in md
    assert "| bzImage " in report.markdown({"size": {**out, "profiles": {"debian": d}}})  # x86 only: as before
    assert report.flatten({"size": out})["size.profiles.arm64.Image"] == 3000.0
