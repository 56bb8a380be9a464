"""arm64 guests (QEMU virt, AAVMF) on an x86_64 host: the command lines, KVM, missing packages, as plain data.

The x86_64 command lines are tests/unit/test_qemu.py's and test_stick_boot.py's,
unchanged; the real arm64 boots are `doit profile=arm64 boot` (uki=1, stick=1).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tinyuki.arch import ARCHES
from tinyuki.errors import TinyukiError
from tinyuki.util import runner
from tinyuki.vm import boottime, qemu
from tinyuki.vm import run as vmrun

ARM = ARCHES["arm64"]
CODE, VARS = Path("/usr/share/AAVMF/AAVMF_CODE.fd"), Path("/t/AAVMF_VARS.fd")


def spec(**kw: object) -> qemu.BootSpec:
    args: dict = {"machine": "virt", "memory": "256M", "accel": "tcg", "cmdline": "console=ttyAMA0 panic=-1",
                  "kernel": Path("Image"), "arch": "arm64"}
    args.update(kw)
    return qemu.BootSpec(**args)


def efi(**kw: object) -> qemu.BootSpec:
    return spec(kernel=None, esp=Path("/t/esp.img"), ovmf_code=CODE, ovmf_vars=VARS, **kw)


def arg_after(cmd: list[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, c in enumerate(cmd) if c == flag]


def test_direct_boot_is_the_by_hand_command() -> None:
    assert qemu.command(spec()) == [
        "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57", "-accel", "tcg", "-m", "256M",
        "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
        "-kernel", "Image", "-append", "console=ttyAMA0 panic=-1",
    ]


def test_no_tsc_hint_and_no_microvm_options_on_virt() -> None:
    cmd = qemu.command(spec(tsc_khz=2596098, disk=Path("/d/disk.img"), virtio_mmio=False))
    assert arg_after(cmd, "-append") == ["console=ttyAMA0 panic=-1"]
    assert arg_after(cmd, "-M") == ["virt"]
    assert arg_after(cmd, "-device") == ["virtio-blk-pci,drive=d0"]


def test_uki_through_aavmf() -> None:
    cmd = qemu.command(efi())
    assert cmd[0] == "qemu-system-aarch64"
    # ACPI off: AAVMF then hands the kernel QEMU's device tree (a kernel without CONFIG_ACPI needs it)
    assert arg_after(cmd, "-M") == ["virt,acpi=off"]
    assert arg_after(cmd, "-cpu") == ["cortex-a57"]
    assert arg_after(cmd, "-drive") == [
        "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd",
        "if=pflash,format=raw,unit=1,file=/t/AAVMF_VARS.fd",
        "file=/t/esp.img,format=raw,if=none,id=esp,readonly=on",
    ]
    # virtio-mmio: the firmware boots from it, the kernel (no CONFIG_VIRTIO_MMIO) never probes it
    assert arg_after(cmd, "-device") == ["virtio-blk-device,drive=esp,bootindex=0"]
    # no 5 s countdown in AAVMF's boot manager: fw_cfg's etc/boot-menu-wait = 0
    assert arg_after(cmd, "-boot") == ["menu=on,splash-time=0"]
    assert "-kernel" not in cmd and "-append" not in cmd
    for flag in ("-nographic", "-no-reboot", "-nodefaults"):
        assert flag in cmd
    assert arg_after(cmd, "-serial") == ["stdio"]


def test_a_stick_on_virt_is_usb_storage_on_xhci_and_virtio_on_request() -> None:
    usb = qemu.command(efi(esp_bus="usb"))
    assert arg_after(usb, "-device") == ["qemu-xhci,id=xhci",
                                         "usb-storage,bus=xhci.0,drive=esp,removable=on,bootindex=0"]
    assert arg_after(usb, "-boot") == ["menu=on,splash-time=0"]
    assert arg_after(qemu.command(efi(esp_bus="virtio")), "-device") == ["virtio-blk-device,drive=esp,bootindex=0"]


def test_the_x86_firmware_boot_gains_nothing() -> None:
    cmd = qemu.command(efi(arch="x86_64", machine="q35"))
    assert cmd[0] == "qemu-system-x86_64" and arg_after(cmd, "-M") == ["q35"]
    assert "-boot" not in cmd and "-cpu" not in cmd


def test_cpu_defaults_to_the_architecture_and_host_under_kvm() -> None:
    kvm = qemu.command(spec(accel="kvm"))  # a native arm64 host: its own cores and interrupt controller
    assert arg_after(kvm, "-cpu") == ["host"] and arg_after(kvm, "-M") == ["virt,gic-version=host"]
    assert arg_after(qemu.command(efi(accel="kvm")), "-M") == ["virt,acpi=off,gic-version=host"]
    assert arg_after(qemu.command(spec(cpu="max")), "-cpu") == ["max"]
    assert arg_after(qemu.command(spec(cpu="cortex-a72", accel="kvm")), "-cpu") == ["cortex-a72"]
    assert "-cpu" not in qemu.command(spec(arch="x86_64", machine="microvm", kernel=Path("/b/bzImage")))
    assert qemu.command(spec(qemu="/opt/qemu/bin/qemu-system-aarch64"))[0] == "/opt/qemu/bin/qemu-system-aarch64"


def test_the_firmware_is_named_per_architecture() -> None:
    assert qemu.firmware_name("arm64") == "AAVMF" and qemu.firmware_name("x86_64") == "OVMF"
    assert qemu.firmware_machine("virt") == "virt"


# ---------------------------------------------------------------- KVM

def test_kvm_is_impossible_for_a_foreign_guest() -> None:
    assert qemu.foreign_guest("arm64", host="x86_64") == "TCG: arm64 guest on an x86_64 host"
    assert qemu.foreign_guest("x86_64", host="aarch64") == "TCG: x86_64 guest on an aarch64 host"
    assert qemu.foreign_guest("arm64", host="aarch64") is None
    assert qemu.foreign_guest("x86_64", host="x86_64") is None


def _on_host(monkeypatch: pytest.MonkeyPatch, machine: str) -> None:
    real = os.uname()
    fake = os.uname_result((real.sysname, real.nodename, real.release, real.version, machine))
    monkeypatch.setattr(qemu.os, "uname", lambda: fake)


def test_the_probe_never_tries_kvm_for_a_foreign_guest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _on_host(monkeypatch, "x86_64")

    def no_vm(*_a: object, **_k: object) -> None:
        raise AssertionError("no test boot for a foreign guest")

    monkeypatch.setattr(vmrun, "stream", no_vm)
    monkeypatch.setattr(vmrun.os, "access", lambda *_a: True)  # even with a usable /dev/kvm
    probe = vmrun.probe_kvm(spec(), "marker")
    assert probe == qemu.KvmProbe(False, "TCG: arm64 guest on an x86_64 host")
    store = tmp_path / "kvm-probe.json"
    again = vmrun.remembered_probe(store, spec(), lambda: no_vm())  # type: ignore[func-returns-value]
    assert again == probe and not store.exists()  # nothing to remember, nothing said "remembered"


def test_a_native_arm64_host_probes_as_x86_does(monkeypatch: pytest.MonkeyPatch) -> None:
    _on_host(monkeypatch, "aarch64")
    monkeypatch.setattr(vmrun.os, "access", lambda *_a: False)
    assert vmrun.probe_kvm(spec(), "marker").reason == "/dev/kvm is missing or not accessible"
    monkeypatch.setattr(vmrun.os, "access", lambda *_a: True)
    assert "no Image beside the UKI" in vmrun.probe_kvm(efi(), "marker").reason


# ---------------------------------------------------------------- missing packages

def test_a_missing_qemu_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    assert vmrun.qemu_hint("qemu-system-x86_64") == vmrun.QEMU_HINT
    hint = vmrun.qemu_hint("qemu-system-aarch64")
    assert "apt-get install qemu-system-arm" in hint and "scripts/setup.sh installs it" in hint
    monkeypatch.setattr(vmrun.shutil, "which", lambda _p: None)
    with pytest.raises(runner.MissingTool) as e:
        vmrun.require_qemu(spec())
    assert "qemu-system-aarch64, which is not installed" in e.value.message and e.value.hint == hint


def test_streaming_a_missing_aarch64_qemu_says_which_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TinyukiError) as e:
        vmrun.stream(qemu.command(spec()), timeout=5, console=qemu.Console("m"), quiet=True)
    assert "qemu-system-aarch64, which is not installed" in e.value.message
    assert "qemu-system-arm" in e.value.hint


def test_missing_firmware_names_its_package() -> None:
    hint = vmrun.firmware_hint("arm64")
    assert "apt-get install qemu-efi-aarch64" in hint and "scripts/setup.sh installs it" in hint
    assert "[boot] ovmf_code/ovmf_vars" in hint
    assert "apt-get install ovmf" in vmrun.firmware_hint("x86_64")


# ---------------------------------------------------------------- the console

# From a real `doit profile=arm64 boot`: PL011 on ttyAMA0, no decompressor, the same printk stamps.
ARM_CONSOLE = [
    "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x411fd070]",
    "[    0.000000] Linux version 6.1.192 (tinyuki@tinyuki) (aarch64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0)",
    "[    0.067438] 9000000.pl011: ttyAMA0 at MMIO 0x9000000 (irq = 13, base_baud = 0) is a PL011 rev1",
    "[    0.073379] printk: console [ttyAMA0] enabled",
    "[    0.270215] Run /init as init process",
    "tinyuki: init started",
    "init: 0 steps failed, powering off",
    "[    0.294339] reboot: Power down",
]
ARM_TIMES = [0.21, 0.21, 0.21, 0.215, 0.414, 0.4315, 0.44, 0.44]


def test_the_time_split_reads_an_arm64_console() -> None:
    console = qemu.Console("tinyuki: init started")
    for line, at in zip(ARM_CONSOLE, ARM_TIMES, strict=True):
        console.feed(line, at)
    assert console.first_kernel_at == 0.21 and console.marker_at == 0.4315
    s = boottime.split(console.lines, console.times, console.marker_at, 0.445)
    assert s.before_kernel == pytest.approx(0.414 - 0.270215)
    assert s.kernel_init == pytest.approx(0.270215)
    assert s.before_kernel + s.kernel_init + s.exec_init == pytest.approx(0.4315)
    text = boottime.describe(s, decompressor=ARM.compressed, plain=ARM.image_name)
    assert text.startswith("QEMU, firmware (Image: no decompressor) 0.144 s;")
    assert "decompressor 0." not in text


def test_an_arm64_panic_at_init_exit_hands_over_the_status() -> None:
    console = qemu.Console("tinyuki: init started")
    for i, line in enumerate(["tinyuki: init started",
                              "[    0.31] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000300",
                              "[    0.32] ---[ end Kernel panic - not syncing: Attempted to kill init! ]---"]):
        console.feed(line, 0.4 + i / 100)
    v = qemu.verdict(console, timed_out=False, returncode=0, timeout=60)
    assert v.status == 3 and v.code == 3
