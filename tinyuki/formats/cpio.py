"""A pure writer for the kernel's initramfs format: newc ("070701") cpio.

The archive is a function of its entries and one timestamp only: entries are
written sorted by name, every entry carries the same mtime, uid and gid are 0
and inode numbers are handed out in that sorted order. The header values
(inode numbers from 721, nlink 2 for directories, device 3:1, a NUL-terminated
symlink target, the trailer padded to 512 bytes) are those of the kernel's own
usr/gen_init_cpio, so for the same file list the bytes are identical to what
the kernel would generate itself, and tools that know the kernel's archives
(GNU cpio, diffoscope) read ours the same way.
"""

from __future__ import annotations

import io
import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from tinyuki.errors import die

MAGIC = b"070701"
FIRST_INO = 721  # gen_init_cpio's first inode number
TRAILER = "TRAILER!!!"
MAX_FIELD = 0xFFFFFFFF  # every header field is 8 hex digits


@dataclass(frozen=True)
class Entry:
    """One archive member. `name` is absolute inside the image ("/dev/console")."""

    name: str
    kind: int  # stat.S_IFDIR, S_IFREG, S_IFCHR, S_IFBLK or S_IFLNK
    mode: int  # permission bits only
    data: bytes = b""  # file contents, or the symlink target
    rdev: tuple[int, int] = (0, 0)  # major, minor of a device node


def directory(name: str, mode: int = 0o755) -> Entry:
    return Entry(name, stat.S_IFDIR, mode)


def regular(name: str, data: bytes, mode: int = 0o644) -> Entry:
    return Entry(name, stat.S_IFREG, mode, data)


def char_device(name: str, major: int, minor: int, mode: int = 0o600) -> Entry:
    return Entry(name, stat.S_IFCHR, mode, rdev=(major, minor))


def block_device(name: str, major: int, minor: int, mode: int = 0o600) -> Entry:
    return Entry(name, stat.S_IFBLK, mode, rdev=(major, minor))


def symlink(name: str, target: str, mode: int = 0o777) -> Entry:
    return Entry(name, stat.S_IFLNK, mode, target.encode())


_KINDS = {stat.S_IFDIR, stat.S_IFREG, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFLNK}


def _check(entries: Iterable[Entry]) -> list[Entry]:
    """Sort and validate: the kernel unpacks in order and does not create missing parents."""
    ordered = sorted(entries, key=lambda e: e.name.encode())
    seen: dict[str, Entry] = {}
    for e in ordered:
        where = f"initramfs entry {e.name!r}"
        if (not e.name.startswith("/") or e.name == "/" or posixpath.normpath(e.name) != e.name
                or e.name.startswith("//") or "\0" in e.name):
            raise die(f"{where}: not a normalized absolute path", 'write names like "/etc/motd"')
        if e.kind not in _KINDS:
            raise die(f"{where}: unsupported file type {e.kind:#o}",
                      "use directory(), regular(), char_device(), block_device() or symlink()")
        if e.mode & ~0o7777:
            raise die(f"{where}: mode {e.mode:#o} has bits beyond the permissions",
                      "give only permission bits, e.g. 0o755")
        if e.kind == stat.S_IFLNK and (not e.data or b"\0" in e.data):
            raise die(f"{where}: a symlink needs a non-empty target without NUL", "give the link's target path")
        if e.kind not in (stat.S_IFREG, stat.S_IFLNK) and e.data:
            raise die(f"{where}: only files and symlinks carry data", "use regular() for a file with contents")
        if len(e.data) + 1 > MAX_FIELD or any(not 0 <= n <= MAX_FIELD for n in e.rdev):
            raise die(f"{where}: size or device number does not fit a newc header", "newc fields are 32 bits")
        if e.name in seen:
            raise die(f"{where}: listed twice", "every path in the image must be unique")
        parent = posixpath.dirname(e.name)
        if parent != "/" and (parent not in seen or seen[parent].kind != stat.S_IFDIR):
            raise die(f"{where}: its parent {parent} is not a directory in the image",
                      "add the parent directory first: the kernel does not create missing parents")
        seen[e.name] = e
    return ordered


def _header(ino: int, mode: int, nlink: int, mtime: int, filesize: int,
            rdev: tuple[int, int], namesize: int) -> bytes:
    fields = (ino, mode, 0, 0, nlink, mtime, filesize, 3, 1, rdev[0], rdev[1], namesize, 0)
    return MAGIC + b"".join(b"%08X" % f for f in fields)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def write_archive(entries: Iterable[Entry], stream: BinaryIO, mtime: int) -> int:
    """Write the archive to `stream`; returns the number of bytes written."""
    if not 0 <= mtime <= MAX_FIELD:
        raise die(f"cpio mtime {mtime} does not fit a newc header (0 .. {MAX_FIELD})",
                  "set [kernel] source_date_epoch to a time between 1970 and 2106")
    offset = 0

    def put(b: bytes) -> None:
        nonlocal offset
        stream.write(b)
        offset += len(b)

    def member(hdr: bytes, name: bytes, body: bytes) -> None:
        put(hdr + name + b"\0")
        put(_pad(offset))
        if body:
            put(body)
            put(_pad(offset))

    for ino, e in enumerate(_check(entries), start=FIRST_INO):
        name = e.name[1:].encode()
        body = e.data + b"\0" if e.kind == stat.S_IFLNK else e.data
        nlink = 2 if e.kind == stat.S_IFDIR else 1
        member(_header(ino, e.kind | e.mode, nlink, mtime, len(body), e.rdev, len(name) + 1), name, body)

    trailer = TRAILER.encode()
    put(MAGIC + b"".join(b"%08X" % f for f in (0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, len(trailer) + 1, 0)))
    put(trailer + b"\0")
    put(_pad(offset))
    put(b"\0" * (-offset % 512))
    return offset


def pack(entries: Iterable[Entry], mtime: int) -> bytes:
    """The whole archive as bytes (an initramfs is small: the kernel holds it in memory too)."""
    buf = io.BytesIO()
    write_archive(entries, buf, mtime)
    return buf.getvalue()
