"""`doit flash` (cli/flash.py, tinyuki/util/blockdev.py) against a loop device standing in for a USB stick.

The loop device is a real block device backed by a file, so the write, the
O_EXCL open, the sync and the read-back are the real ones. What the kernel
says about it (removable, model, partitions) comes from a made-up sysfs whose
dev/block/MAJOR:MINOR entry points at a USB-looking device directory; the
real sysfs is used to show that a loop device, not being removable, is
refused. Needs root and loop devices: without them these tests fail.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinyuki.cli.flash import flash
from tinyuki.errors import TinyukiError
from tinyuki.util import blockdev

STICK = 8 << 20


@pytest.fixture
def stick(tmp_path: Path) -> Iterator[dict[str, Path]]:
    backing = tmp_path / "stick.bin"
    backing.write_bytes(bytes(STICK))
    loop = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
    assert loop.returncode == 0, f"needs root and a free loop device: {loop.stderr}"
    dev = Path(loop.stdout.strip())
    try:
        yield {"dev": dev, "backing": backing}
    finally:
        subprocess.run(["losetup", "-d", str(dev)], check=False)


def fake_sys(tmp: Path, dev: Path, *, removable: str = "1", ro: str = "0", size: int = STICK,
             partition: bool = False, holders: tuple[str, ...] = (), parts: tuple[str, ...] = ()) -> Path:
    """A sysfs in which `dev` is a USB stick (or a partition of one)."""
    st = os.stat(dev)
    number = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    sysfs = tmp / "sys"
    disk = sysfs / "devices" / "pci0000:00" / "usb1" / "1-1" / "host0" / "block" / "sdz"
    node = disk / "sdz1" if partition else disk
    (node / "holders").mkdir(parents=True)
    (disk / "device").mkdir(exist_ok=True)
    (disk / "removable").write_text(removable + "\n")
    (disk / "device" / "model").write_text("Fake Stick      \n")
    (disk / "device" / "vendor").write_text("tinyuki \n")
    (node / "size").write_text(f"{size // 512}\n")
    (node / "ro").write_text(ro + "\n")
    (node / "dev").write_text(number + "\n")
    if partition:
        (node / "partition").write_text("1\n")
    for h in holders:
        (node / "holders" / h).mkdir()
    for i, number_of_part in enumerate(parts, 1):
        (disk / f"sdz{i}").mkdir()
        (disk / f"sdz{i}" / "partition").write_text(f"{i}\n")
        (disk / f"sdz{i}" / "dev").write_text(number_of_part + "\n")
    (sysfs / "dev" / "block").mkdir(parents=True)
    os.symlink(node, sysfs / "dev" / "block" / number)
    return sysfs


def fake_proc(tmp: Path, mountinfo: str = "", swaps: str = "Filename Type Size Used Priority\n") -> Path:
    proc = tmp / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(mountinfo)
    (proc / "swaps").write_text(swaps)
    return proc


def image(tmp: Path, size: int = 3 << 20) -> Path:
    path = tmp / "tinyuki.img"
    path.write_bytes(hashlib.sha256(b"x").digest() * (size // 32))
    return path


def test_writes_syncs_and_reads_back(tmp_path: Path, stick: dict[str, Path],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    img = image(tmp_path)
    asked = []
    result = flash(img, str(stick["dev"]), False, sysfs=fake_sys(tmp_path, stick["dev"]), proc=fake_proc(tmp_path),
                   ask=lambda q: asked.append(q) or "yes")
    out = capsys.readouterr()
    assert asked and str(stick["dev"]) in asked[0]
    assert "tinyuki Fake Stick, 8.0 MiB" in out.out and "usb" in out.out  # model and size shown before asking
    assert "100%" in out.err and "[####" in out.err  # the progress bar
    assert result.sha256 == hashlib.sha256(img.read_bytes()).hexdigest()
    assert f"sha256 {result.sha256} matches" in out.out
    with open(stick["backing"], "rb") as f:
        assert f.read(img.stat().st_size) == img.read_bytes()


def test_no_answer_no_write(tmp_path: Path, stick: dict[str, Path]) -> None:
    img = image(tmp_path)
    with pytest.raises(TinyukiError, match="not confirmed"):
        flash(img, str(stick["dev"]), False, sysfs=fake_sys(tmp_path, stick["dev"]), proc=fake_proc(tmp_path),
              ask=lambda q: "y")
    assert stick["backing"].read_bytes() == bytes(STICK)


def test_without_a_terminal_it_asks_for_yes(tmp_path: Path, stick: dict[str, Path],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(TinyukiError) as err:
        flash(image(tmp_path), str(stick["dev"]), False, sysfs=fake_sys(tmp_path, stick["dev"]),
              proc=fake_proc(tmp_path))
    assert err.value.hint and "yes=1" in err.value.hint
    assert stick["backing"].read_bytes() == bytes(STICK)


def test_yes_skips_the_question(tmp_path: Path, stick: dict[str, Path]) -> None:
    def never(q: str) -> str:
        raise AssertionError("asked despite yes=1")

    flash(image(tmp_path), str(stick["dev"]), True, sysfs=fake_sys(tmp_path, stick["dev"]), proc=fake_proc(tmp_path),
          ask=never)
    assert stick["backing"].read_bytes() != bytes(STICK)


def test_a_loop_device_is_not_removable_to_the_real_kernel(tmp_path: Path, stick: dict[str, Path]) -> None:
    with pytest.raises(TinyukiError) as err:
        flash(image(tmp_path), str(stick["dev"]), True)
    assert "is not a removable disk" in err.value.message and err.value.hint and "dd if=" in err.value.hint
    assert stick["backing"].read_bytes() == bytes(STICK)


@pytest.mark.parametrize(("setup", "message", "hint"), [
    ({"removable": "0"}, "is not a removable disk", "dd if="),
    ({"partition": True}, "is a partition of /dev/sdz", "device=/dev/sdz"),
    ({"ro": "1"}, "is read-only", "write-protect"),
    ({"size": 2 << 20}, "less than the image's", "larger stick"),
    ({"holders": ("dm-0",)}, "in use by dm-0", "cryptsetup close"),
])
def test_refusals(tmp_path: Path, stick: dict[str, Path], setup: dict[str, object], message: str, hint: str) -> None:
    with pytest.raises(TinyukiError) as err:
        flash(image(tmp_path), str(stick["dev"]), True, sysfs=fake_sys(tmp_path, stick["dev"], **setup),  # type: ignore[arg-type]
              proc=fake_proc(tmp_path))
    assert message in err.value.message and err.value.hint and hint in err.value.hint
    assert stick["backing"].read_bytes() == bytes(STICK)


def test_a_mounted_stick_is_refused(tmp_path: Path, stick: dict[str, Path]) -> None:
    st = os.stat(stick["dev"])
    number = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    mountinfo = f"36 27 {number} / /media/stick rw,relatime - vfat /dev/sdz rw\n"
    with pytest.raises(TinyukiError) as err:
        flash(image(tmp_path), str(stick["dev"]), True, sysfs=fake_sys(tmp_path, stick["dev"]),
              proc=fake_proc(tmp_path, mountinfo=mountinfo))
    assert "is mounted (on /media/stick)" in err.value.message and err.value.hint and "umount" in err.value.hint
    swaps = f"Filename Type Size Used Priority\n{stick['dev']} partition 8188 0 -2\n"
    with pytest.raises(TinyukiError, match="swap"):
        flash(image(tmp_path), str(stick["dev"]), True, sysfs=fake_sys(tmp_path / "2", stick["dev"]),
              proc=fake_proc(tmp_path / "2", swaps=swaps))
    assert stick["backing"].read_bytes() == bytes(STICK)


def test_a_mounted_partition_counts_as_the_stick_being_mounted(tmp_path: Path, stick: dict[str, Path]) -> None:
    sysfs = fake_sys(tmp_path, stick["dev"], parts=("8:17", "8:18"))
    dev = blockdev.inspect(str(stick["dev"]), sysfs)
    assert dev.partitions == (("sdz1", "8:17"), ("sdz2", "8:18")) and "partitions: sdz1, sdz2" in dev.describe()
    mountinfo = "36 27 8:18 / /media/data rw,relatime - vfat /dev/sdz2 rw\n"
    with pytest.raises(TinyukiError, match=r"is mounted \(on /media/data\)"):
        flash(image(tmp_path), str(stick["dev"]), True, sysfs=sysfs, proc=fake_proc(tmp_path, mountinfo=mountinfo))
    assert stick["backing"].read_bytes() == bytes(STICK)
    assert blockdev.mounted({"8:16", "8:17"}, "36 27 8:17 / /media/x rw - vfat /dev/sdz1 rw\n") == ["/media/x"]


@pytest.mark.parametrize(("device", "message"), [
    ("/dev/null", "is not a block device"),
    ("/dev/does-not-exist", "does not exist"),
    ("sdb", "is not a device path"),
])
def test_what_is_not_a_disk_is_refused(tmp_path: Path, device: str, message: str) -> None:
    with pytest.raises(TinyukiError) as err:
        flash(image(tmp_path), device, True)
    assert message in err.value.message and err.value.hint and "lsblk" in err.value.hint


def test_a_missing_image_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(TinyukiError) as err:
        flash(tmp_path / "tinyuki.img", "/dev/null", True)
    assert "does not exist" in err.value.message and err.value.hint == "build it first: doit disk"
