"""Booting tinyuki.img as a USB stick (tinyuki/vm/qemu.py): the devices QEMU gets, as plain data.

A stick is a usb-storage device on an xHCI controller, marked removable, the
boot device; bus=virtio keeps the old virtio-blk attachment. The real boot is
in tests/e2e/test_disk_e2e.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyuki.vm import qemu


def spec(**kw: object) -> qemu.BootSpec:
    args = {"machine": "q35", "memory": "128M", "accel": "tcg", "esp": Path("/b/tinyuki.img"),
            "ovmf_code": Path("/o/code.fd"), "ovmf_vars": Path("/o/vars.fd"), **kw}
    return qemu.BootSpec(**args)  # type: ignore[arg-type]


def test_a_stick_is_usb_storage_on_xhci() -> None:
    cmd = qemu.command(spec(esp_bus="usb"))
    assert "file=/b/tinyuki.img,format=raw,if=none,id=esp,readonly=on" in cmd
    devices = [cmd[i + 1] for i, word in enumerate(cmd) if word == "-device"]
    assert devices == ["qemu-xhci,id=xhci", "usb-storage,bus=xhci.0,drive=esp,removable=on,bootindex=0"]
    assert not any("virtio" in word for word in cmd)


def test_virtio_stays_the_default_and_a_switch() -> None:
    for s in (spec(), spec(esp_bus="virtio")):
        devices = [w for i, w in enumerate(qemu.command(s)) if i and qemu.command(s)[i - 1] == "-device"]
        assert devices == ["virtio-blk-pci,drive=esp,bootindex=0"]


def test_an_unknown_bus_is_refused() -> None:
    with pytest.raises(ValueError, match="bus"):
        qemu.command(spec(esp_bus="scsi"))
