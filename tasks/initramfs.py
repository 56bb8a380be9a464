"""Stage 7: pack /init (and the profile's extra files) as the initramfs.

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
import shutil
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from doit.tools import config_changed

from tasks import cpio
from tasks.cache import cached
from tasks.context import Context
from tasks.errors import die
from tasks.fsutil import atomic_write, fsync_dir, remove_tree
from tasks.runner import run, tool_version

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
    p = ctx.paths
    try:
        init = p.init_bin.read_bytes()
    except OSError as e:
        raise die(f"cannot read the compiled init {p.init_bin}: {e.strerror}", "run `doit init` first") from e
    archive = cpio.pack(layout(init, _extra_files(ctx)), ctx.profile.kernel.source_date_epoch)
    atomic_write(p.cpio, archive)
    gzip_file(archive, p.initrd, log=p.logs / "initramfs.log")
    print(f"initramfs: {p.cpio} ({len(archive)} bytes), {p.initrd} ({p.initrd.stat().st_size} bytes)")


def task(ctx: Context) -> dict[str, Any]:
    p = ctx.paths
    settings = {
        "source_date_epoch": ctx.profile.kernel.source_date_epoch,
        # the image paths: renaming a file changes the archive but no file_dep
        "files": [[dest, str(src)] for dest, src in ctx.profile.init.files],
        # the mode bit the image keeps: chmod +x changes the archive, not the file's bytes
        "executable": [dest for dest, src in ctx.profile.init.files if os.stat(src).st_mode & 0o111],
        "gzip": tool_version([shutil.which("gzip") or "gzip", "--version"]),
    }
    return {
        "actions": [cached(ctx, "initramfs", lambda: build(ctx))],
        "file_dep": [str(p.init_bin), *(str(src) for _, src in ctx.profile.init.files)],
        "targets": [str(p.cpio), str(p.initrd)],
        "uptodate": [config_changed(settings)],
        "verbosity": 2,
        "clean": True,
    }
