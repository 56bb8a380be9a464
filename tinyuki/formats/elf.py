"""Reading ELF files: is this program fit to be /init, can QEMU boot this kernel directly?"""

from __future__ import annotations

import struct

PT_INTERP = 3
PT_NOTE = 4
EM_X86_64 = 62


def elf_problem(data: bytes) -> str | None:
    """Why this file cannot be the kernel's /init, or None if it is a static x86-64 ELF executable."""
    if data[:4] != b"\x7fELF":
        return "not an ELF file"
    if data[4] != 2 or data[5] != 1:
        return "not a 64-bit little-endian ELF file"
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_type not in (2, 3):  # ET_EXEC, or ET_DYN for static-pie
        return f"not an executable (ELF type {e_type})"
    if e_machine != EM_X86_64:
        return f"built for ELF machine {e_machine}, not x86-64 (62)"
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 > len(data):
            return "truncated program headers"
        p_type, = struct.unpack_from("<I", data, off)
        if p_type == PT_INTERP:
            return "dynamically linked (it names a program interpreter)"
    return None


XEN_ELFNOTE_PHYS32_ENTRY = 18


def has_pvh_entry(elf: bytes) -> bool:
    """Whether a 64-bit ELF kernel carries the PVH entry note QEMU's -kernel needs to boot it directly.

    Without it (CONFIG_PVH off) QEMU refuses the vmlinux ("Error loading
    uncompressed kernel without PVH ELF Note"), so a profile that boots vmlinux
    must be caught at build time instead.
    """
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return False
    phoff, = struct.unpack_from("<Q", elf, 32)
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    for i in range(phnum):
        p_type, _flags, offset, _va, _pa, filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != PT_NOTE:
            continue
        pos, end = offset, offset + filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False
