"""The checks before `doit flash` writes a device (tinyuki/util/blockdev.py), on made-up devices.

Every refusal must name the reason and the way out; the order matters (a
partition is refused as a partition even when it is also mounted). The real
writes to a loop device are in tests/wiring/test_flash.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tinyuki.errors import TinyukiError
from tinyuki.util import blockdev
from tinyuki.util.fmt import progress_bar

STICK = blockdev.Device(path=Path("/dev/sdz"), name="sdz", number="8:16", size=16 << 30, removable=True,
                        read_only=False, partition_of=None, partitions=(("sdz1", "8:17"),), holders=(),
                        model="Cruzer Blade", vendor="SanDisk", transport="usb")


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text("22 27 0:21 / /proc rw - proc proc rw\n")
    (tmp_path / "swaps").write_text("Filename Type Size Used Priority\n")
    return tmp_path


def test_a_plain_stick_passes(proc: Path) -> None:
    blockdev.check(STICK, 5 << 20, proc)
    assert "SanDisk Cruzer Blade, 16.0 GiB (17,179,869,184 bytes), usb, partitions: sdz1" in STICK.describe()


@pytest.mark.parametrize(("change", "message", "hint"), [
    ({"partition_of": "sdz"}, "/dev/sdz is a partition of /dev/sdz", "device=/dev/sdz"),
    ({"removable": False}, "is not a removable disk", "dd if=img of=/dev/sdz bs=4M conv=fsync"),
    ({"holders": ("dm-3",)}, "in use by dm-3", "vgchange -an"),
    ({"read_only": True}, "is read-only", "write-protect"),
    ({"size": 4 << 20}, "holds 4.0 MiB (4,194,304 bytes), less than the image's 5.0 MiB", "larger stick"),
])
def test_refusals_say_why_and_what_to_do(proc: Path, change: dict[str, object], message: str, hint: str) -> None:
    with pytest.raises(TinyukiError) as err:
        blockdev.check(dataclasses.replace(STICK, **change), 5 << 20, proc, Path("img"))  # type: ignore[arg-type]
    assert message in err.value.message
    assert err.value.hint and hint in err.value.hint


def test_a_partition_is_refused_before_its_mounts(proc: Path) -> None:
    (proc / "self" / "mountinfo").write_text("36 27 8:17 / /media/x rw - vfat /dev/sdz1 rw\n")
    with pytest.raises(TinyukiError, match="is a partition"):
        blockdev.check(dataclasses.replace(STICK, partition_of="sdz", partitions=()), 1, proc)
    with pytest.raises(TinyukiError, match=r"mounted \(on /media/x\)"):
        blockdev.check(STICK, 1, proc)


def test_mountinfo_is_matched_by_device_number_not_by_name() -> None:
    text = "36 27 8:17 / /media/x rw - vfat /dev/disk/by-label/X rw\n37 27 8:33 / /other rw - ext4 /dev/sdc1 rw\n"
    assert blockdev.mounted({"8:16", "8:17"}, text) == ["/media/x"]
    assert blockdev.mounted({"8:48"}, text) == []


def test_progress_bar() -> None:
    line = progress_bar(3 << 20, 12 << 20, 2.0, width=8)
    assert line == "\r[##......]  25% 3.0 MiB of 12.0 MiB, 1.5 MiB/s"
    assert progress_bar(5, 5, 0.0, width=4).startswith("\r[####] 100%")
