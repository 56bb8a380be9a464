"""Writing tinyuki.img to a USB stick without ever writing to the wrong disk.

`doit flash device=/dev/sdX` overwrites a whole device, so before a byte is
written the device must be: a block device, a whole disk (not a partition),
removable (the kernel's own flag: USB sticks and SD cards, never the disk the
system runs from), not write-protected, not in use (none of it mounted, used as
swap or held by device-mapper/RAID), and at least as large as the image. Every
refusal says why and what to do. The facts come from sysfs and /proc, whose
roots are parameters so the checks are tested against a made-up machine.

The write opens the device with O_EXCL (the kernel refuses it while anything
holds the disk), shows progress, syncs, drops the cached pages and reads the
image's length back, comparing sha256: a fake-capacity stick or a failing one
is caught here, not at the next boot.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tinyuki.errors import die
from tinyuki.util.fmt import human_size

CHUNK = 4 << 20
BLKRRPART = 0x125F  # ask the kernel to reread the partition table
LIST_HINT = "list the removable disks with `lsblk -d -o NAME,RM,TRAN,SIZE,MODEL` and give one as device=/dev/sdX"


def dd_hint(image: Path | str = "build/<profile>/tinyuki.img", device: Path | str = "/dev/sdX") -> str:
    """The way out for a disk tinyuki will not write to: the documented dd line, for the user to run deliberately."""
    return ("tinyuki writes only to disks the kernel marks removable (USB sticks, SD cards); for another disk, "
            "write it yourself after checking the name twice: "
            f"dd if={image} of={device} bs=4M conv=fsync status=progress")


@dataclass(frozen=True)
class Device:
    """What the kernel says about a block device."""

    path: Path
    name: str  # the kernel's name: sdb, mmcblk0
    number: str  # major:minor
    size: int  # bytes
    removable: bool
    read_only: bool
    partition_of: str | None  # the whole disk's name, when this is a partition
    partitions: tuple[tuple[str, str], ...]  # (name, major:minor) of each partition
    holders: tuple[str, ...]  # device-mapper, RAID or loop devices built on it
    model: str
    vendor: str
    transport: str  # usb, mmc, ata, nvme, virtual, ...

    def describe(self) -> str:
        label = " ".join(x for x in (self.vendor, self.model) if x) or "unknown model"
        parts = ", ".join(name for name, _ in self.partitions) or "none"
        return (f"{self.path} ({self.name}): {label}, {human_size(self.size)} ({self.size:,} bytes), "
                f"{self.transport}, partitions: {parts}")


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return default


def _transport(sys_path: Path) -> str:
    real = str(sys_path.resolve())
    for needle, name in (("/usb", "usb"), ("/mmc", "mmc"), ("/nvme", "nvme"), ("/ata", "ata"),
                         ("/virtual/", "virtual"), ("/virtio", "virtio")):
        if needle in real:
            return name
    return "unknown"


def inspect(device: str, sysfs: Path = Path("/sys")) -> Device:
    """The device's facts from sysfs; an error unless `device` names a block device."""
    path = Path(device)
    if not device or not path.is_absolute():
        raise die(f"device={device!r} is not a device path", LIST_HINT)
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        raise die(f"{device} does not exist", LIST_HINT) from e
    if not stat.S_ISBLK(st.st_mode):
        raise die(f"{device} is not a block device", LIST_HINT)
    number = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    node = sysfs / "dev" / "block" / number
    if not node.exists():
        raise die(f"{device} ({number}) is not in {sysfs}/dev/block", "is sysfs mounted? " + LIST_HINT)
    real = node.resolve()
    is_part = (node / "partition").exists()
    partitions = []
    if not is_part:
        for child in sorted(real.iterdir()) if real.is_dir() else []:
            if (child / "partition").exists():
                partitions.append((child.name, _read(child / "dev")))
    whole = real.parent if is_part else real
    return Device(
        path=path, name=real.name, number=number,
        size=int(_read(node / "size", "0") or 0) * 512,
        removable=_read(whole / "removable") == "1",
        read_only=_read(node / "ro") == "1",
        partition_of=whole.name if is_part else None,
        partitions=tuple(partitions),
        holders=tuple(sorted(p.name for p in (node / "holders").iterdir())) if (node / "holders").is_dir() else (),
        model=_read(whole / "device" / "model"), vendor=_read(whole / "device" / "vendor"),
        transport=_transport(whole),
    )


def mounted(numbers: set[str], mountinfo: str) -> list[str]:
    """The mount points of any of the devices (major:minor), from /proc/self/mountinfo's text."""
    out = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[2] in numbers:
            out.append(fields[4])
    return out


def swapping(numbers: set[str], swaps: str) -> list[str]:
    """The swap devices (from /proc/swaps' text) that are among the devices `numbers` (major:minor)."""
    out = []
    for line in swaps.splitlines()[1:]:
        if not line.split():
            continue
        path = line.split()[0]
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode) and f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" in numbers:
            out.append(path)
    return out


def check(dev: Device, image_size: int, proc: Path = Path("/proc"), image: Path | None = None) -> None:
    """Refuse, with the reason and the way out, any device tinyuki must not overwrite."""
    if dev.partition_of is not None:
        raise die(f"{dev.path} is a partition of /dev/{dev.partition_of}, not a whole disk",
                  f"the image carries its own partition table: give the whole disk, device=/dev/{dev.partition_of}")
    if not dev.removable:
        raise die(f"{dev.path} ({' '.join(x for x in (dev.vendor, dev.model) if x) or dev.name}, "
                  f"{human_size(dev.size)}) is not a removable disk", dd_hint(image or "build/<profile>/tinyuki.img",
                                                                              dev.path))
    numbers = {dev.number, *(n for _, n in dev.partitions)}
    where = mounted(numbers, _read(proc / "self" / "mountinfo"))
    if where:
        raise die(f"{dev.path} is mounted (on {', '.join(where)})",
                  f"unmount it first (`umount {' '.join(where)}`), then run flash again")
    swap = swapping(numbers, _read(proc / "swaps"))
    if swap:
        raise die(f"{dev.path} is in use as swap ({', '.join(swap)})", f"run `swapoff {' '.join(swap)}` first")
    if dev.holders:
        raise die(f"{dev.path} is in use by {', '.join(dev.holders)} (device-mapper, RAID or a loop device)",
                  "stop what uses it (cryptsetup close, vgchange -an, mdadm --stop), then run flash again")
    if dev.read_only:
        raise die(f"{dev.path} is read-only", "slide the stick's or SD card's write-protect switch off")
    if dev.size < image_size:
        raise die(f"{dev.path} holds {human_size(dev.size)} ({dev.size:,} bytes), less than the image's "
                  f"{human_size(image_size)} ({image_size:,} bytes)",
                  "use a larger stick, or make the image smaller ([disk] esp_size, data_size)")


@dataclass(frozen=True)
class Written:
    sha256: str
    size: int
    seconds: float


def write(image: Path, device: Path, progress: Callable[[int, int], None] | None = None) -> Written:
    """Copy the image to the start of `device`, sync, and read it back; an error unless the sha256 matches."""
    size = image.stat().st_size
    written = hashlib.sha256()
    start = time.monotonic()
    flags = os.O_WRONLY | (os.O_EXCL if stat.S_ISBLK(os.stat(device).st_mode) else 0)
    try:
        fd = os.open(device, flags)
    except OSError as e:
        raise die(f"cannot open {device} for writing: {e.strerror}",
                  "something holds the device (a mount, an automounter, a partition tool): release it") from e
    try:
        done = 0
        with open(image, "rb") as src:
            while chunk := src.read(CHUNK):
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                written.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, size)
        os.fsync(fd)
        with contextlib.suppress(OSError):
            fcntl.ioctl(fd, BLKRRPART)  # show the new partitions; a device without partition support says no
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # read back from the device, not the page cache
    finally:
        os.close(fd)
    back = hashlib.sha256()
    with open(device, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        left = size
        while left:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            back.update(chunk)
            left -= len(chunk)
    if left or back.hexdigest() != written.hexdigest():
        raise die(f"{device} reads back differently from what was written "
                  f"(sha256 {back.hexdigest()[:16]}… instead of {written.hexdigest()[:16]}…"
                  + (f", {left:,} bytes short" if left else "") + ")",
                  "the stick is failing or smaller than it claims (a fake-capacity stick): use another one")
    return Written(written.hexdigest(), size, time.monotonic() - start)
