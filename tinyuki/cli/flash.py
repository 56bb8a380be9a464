"""`doit flash device=/dev/sdX`: write tinyuki.img to a USB stick, safely, and prove it arrived.

The checks (whole disk, removable, not mounted or in use, large enough) are
in tinyuki/util/blockdev.py; this module shows the device's model and size,
asks before overwriting it (unless yes=1), draws the progress bar and reports
the sha256 read back from the stick.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from doit import get_var

from tinyuki.cli import params
from tinyuki.cli.actions import action
from tinyuki.config.context import Context
from tinyuki.errors import die
from tinyuki.tasks.disk import DISK
from tinyuki.util import blockdev
from tinyuki.util import fs as fsutil
from tinyuki.util.flags import yes_no
from tinyuki.util.fmt import human_size, progress_bar


def _confirm(dev: blockdev.Device, ask: Callable[[str], str] | None) -> None:
    if ask is None:
        if not sys.stdin.isatty():
            raise die(f"not confirmed: nobody to ask before overwriting {dev.path}",
                      f"run it in a terminal to answer the question, or add yes=1: doit flash device={dev.path} yes=1")
        ask = input
    answer = ask(f"flash: everything on {dev.path} will be lost. Type yes to write the image: ")
    if answer.strip().lower() != "yes":
        raise die(f"not confirmed: {dev.path} was left as it was", "answer yes to write the image, or add yes=1")


def flash(image: Path, device: str, yes: bool, *, sysfs: Path = Path("/sys"), proc: Path = Path("/proc"),
          ask: Callable[[str], str] | None = None) -> blockdev.Written:
    """Check the device, confirm, write, sync and compare; returns what was written and read back."""
    if not device:
        raise die("flash needs the stick: device=/dev/sdX", blockdev.LIST_HINT)
    if not image.is_file():
        raise die(f"{image} does not exist", "build it first: doit disk")
    dev = blockdev.inspect(device, sysfs)
    size = image.stat().st_size
    blockdev.check(dev, size, proc, image)
    print(f"flash: image {image} ({human_size(size)}, sha256 {fsutil.sha256_file(image)[:16]}…)", flush=True)
    print(f"flash: device {dev.describe()}", flush=True)
    if not yes:
        _confirm(dev, ask)
    start = time.monotonic()

    def show(done: int, total: int) -> None:
        sys.stderr.write(progress_bar(done, total, time.monotonic() - start))
        sys.stderr.flush()

    result = blockdev.write(image, dev.path, progress=show)
    sys.stderr.write("\n")
    print(f"flash: wrote and read back {human_size(result.size)} in {result.seconds:.1f} s; "
          f"sha256 {result.sha256} matches; the stick can be removed", flush=True)
    return result


def task(ctx: Context) -> dict[str, Any]:
    @action
    def run(device: str, yes: str) -> None:
        params.adopt({"device": device, "yes": yes})
        flash(DISK.at(ctx), get_var("device") or "", yes_no(get_var("yes"), "yes"))

    return {
        "basename": "flash",
        "doc": "Write tinyuki.img to a removable disk: device=/dev/sdX; asks first unless yes=1 (doit help flash).",
        "actions": [run],
        "file_dep": [str(DISK.at(ctx))],
        "uptodate": [False],
        "verbosity": 2,
        "params": [
            params.param("device", "the whole removable disk to overwrite, like /dev/sdb (never a partition)"),
            params.param("yes", "1: do not ask before overwriting the device"),
        ],
    }
