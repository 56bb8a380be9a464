"""initramfs: pack /init (and the profile's extra files) as the initramfs.

Two outputs from the same archive: initramfs.cpio, uncompressed, which the
kernel embeds through CONFIG_INITRAMFS_SOURCE (kbuild compresses it itself),
and initrd.img, the same gzip'd, for booting a kernel with a separate initrd.
Everything inside carries the profile's source_date_epoch, so the archive
depends only on the files' contents. The files themselves get a fresh mtime
when written: kbuild decides by mtime whether to re-embed the cpio, and a
fixed mtime would make it ship a stale program.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinyuki.config.context import Context
from tinyuki.errors import die
from tinyuki.formats import cpio
from tinyuki.stage import Output, Stage
from tinyuki.tasks.init import INIT
from tinyuki.util.fs import atomic_write, fsync_dir, remove_tree
from tinyuki.util.runner import run

CPIO = Output("initramfs.cpio", manifest="initramfs.cpio")
INITRD = Output("initrd.img", manifest="initrd")
CONSOLE = (5, 1)  # /dev/console: the kernel opens it as init's stdin/stdout/stderr before /dev is mounted


def layout(init: bytes, extra: Sequence[tuple[str, bytes, int]]) -> list[cpio.Entry]:
    """The image: /init, /dev with /dev/console, /proc, and extra (dest, data, mode) files.

    Missing parent directories of extra files are added (0755), because the
    kernel's unpacker does not create them and would silently drop the file.
    """
    entries = {
        "/dev": cpio.directory("/dev"),
        "/dev/console": cpio.char_device("/dev/console", *CONSOLE),
        "/proc": cpio.directory("/proc"),
        "/init": cpio.regular("/init", init, 0o755),
    }
    base = set(entries)
    for dest, data, mode in extra:
        if dest in entries:
            raise die(f"[init] files: {dest} is already part of the image",
                      f"choose another path; the image always has {', '.join(sorted(base))}")
        entries[dest] = cpio.regular(dest, data, mode)
    for dest, _, _ in extra:
        parent = posixpath.dirname(dest)
        while parent != "/":
            known = entries.get(parent)
            if known is None:
                entries[parent] = cpio.directory(parent)
            elif known.kind != stat.S_IFDIR:
                raise die(f"[init] files: {dest} would be inside {parent}, which is a file in the image",
                          "put one of them elsewhere")
            parent = posixpath.dirname(parent)
    return list(entries.values())


def _extra_files(ctx: Context) -> list[tuple[str, bytes, int]]:
    """Read the profile's extra files; executables stay executable, the rest is 0644."""
    out = []
    for dest, src in ctx.profile.init.files:
        try:
            data = src.read_bytes()
            executable = os.stat(src).st_mode & 0o111
        except OSError as e:
            raise die(f"[init] files: cannot read {src} (for {dest}): {e.strerror}",
                      f"fix the path in {ctx.profile.path}") from e
        out.append((dest, data, 0o755 if executable else 0o644))
    return out


def gzip_file(data: bytes, dest: Path, log: Path | None = None) -> None:
    """Write `data` gzip'd by `gzip -n -9` to dest, atomically.

    GNU gzip rather than Python's zlib: their deflate output differs, and
    `gzip -n -9` (no name, no timestamp) is what kbuild itself uses.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        raw = tmp / "archive"
        raw.write_bytes(data)
        run(["gzip", "-n", "-9", raw], what="compressing the initrd", log=log,
            hint="install gzip (Debian package gzip)")
        packed = tmp / "archive.gz"
        fd = os.open(packed, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(packed, 0o644)
        os.replace(packed, dest)
        fsync_dir(dest.parent)
    finally:
        remove_tree(tmp)


def build(ctx: Context) -> None:
    program, out, initrd = INIT.at(ctx), CPIO.at(ctx), INITRD.at(ctx)
    try:
        init = program.read_bytes()
    except OSError as e:
        raise die(f"cannot read the compiled init {program}: {e.strerror}", "run `doit init` first") from e
    archive = cpio.pack(layout(init, _extra_files(ctx)), ctx.profile.kernel.source_date_epoch)
    atomic_write(out, archive)
    gzip_file(archive, initrd, log=ctx.paths.logs / "initramfs.log")
    print(f"initramfs: {out} ({len(archive)} bytes), {initrd} ({initrd.stat().st_size} bytes)")


def modes(ctx: Context) -> dict[str, Any]:
    """The mode bit the image keeps: chmod +x changes the archive, not the file's bytes."""
    return {"executable": [dest for dest, src in ctx.profile.init.files if os.stat(src).st_mode & 0o111]}


STAGE = Stage("initramfs", "Pack /init and friends as a deterministic newc cpio, plus a gzip'd initrd.", build,
              needs=("init",), outputs=(CPIO, INITRD), derived=modes,
              tools=("gzip",), recipe=("tinyuki.formats.cpio",),
              cache=True)
