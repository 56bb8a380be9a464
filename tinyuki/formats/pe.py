"""Adding sections to a PE image (the systemd EFI stub), as ukify does, without objcopy.

objcopy stamps the current time into the PE header and makes the caller guess
section addresses; here the new sections are placed right after the stub's
last section (aligned to its SectionAlignment), the header fields that describe
the image are updated, the timestamp is the build's epoch and the checksum is
recomputed, so the same inputs always give the same bytes.

Every signer and loader must see the same file: Debian's systemd 252 stub still
carries its COFF symbol and string tables after its last section. Left in place
they end up between the stub's sections and ours, a stretch of the file no
section covers: sbverify warns about the gap, sbsign's Authenticode hash skips
it (unsigned bytes) and a signer that hashes straight through (osslsigncode)
produces a digest the firmware computes differently ("Access Denied"). So, as
ukify does, those tables are dropped when they sit at the end of the stub, and
`layout_problems` checks that headers plus sections cover the file exactly.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pefile

from tinyuki.errors import die

# Read-only initialized data: what objcopy's `--set-section-flags X=data,readonly` gives
# and what systemd's stub expects of the sections it reads.
DATA_READONLY = (
    pefile.SECTION_CHARACTERISTICS["IMAGE_SCN_CNT_INITIALIZED_DATA"]
    | pefile.SECTION_CHARACTERISTICS["IMAGE_SCN_MEM_READ"]
)
# `.linux` as ukify writes it: code, readable. Stubs that hand over to the kernel through the
# EFI handover protocol run it in place, and systemd 257+ load it as a PE image from there.
LINUX_CODE = (
    pefile.SECTION_CHARACTERISTICS["IMAGE_SCN_CNT_CODE"]
    | pefile.SECTION_CHARACTERISTICS["IMAGE_SCN_MEM_READ"]
)
SECTION_HEADER_SIZE = 40
SYMBOL_SIZE = 18  # one COFF symbol table entry
MAX_NAME = 8
LOCAL_SYMS_STRIPPED = 0x0008  # IMAGE_FILE_LOCAL_SYMS_STRIPPED
SECURITY_DIRECTORY = pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_SECURITY"]
# ukify's SBAT entry for a UKI (its STUB_SBAT): revocation of UKIs as a class.
UKI_SBAT_LINE = "uki,1,UKI,uki,1,https://uapi-group.org/specifications/specs/unified_kernel_image/\n"


# AArch64's NOP (0xd503201f, little-endian): systemd's arm64 stub keeps its PE header inside the code
# section of the ELF it was made from, so the header's slack up to SizeOfHeaders is alignment padding
# of NOPs instead of zeros. Nothing runs or reads it; new section headers may go there as in zeros.
AARCH64_NOP = bytes.fromhex("1f2003d5")


def is_padding(data: bytes) -> bool:
    """Whether header slack holds only padding: zeros, or AArch64 NOPs (word-aligned, whole words)."""
    if not any(data):
        return True
    return len(data) % 4 == 0 and data == AARCH64_NOP * (len(data) // 4)


def round_up(value: int, alignment: int) -> int:
    if alignment <= 1:
        return value
    return (value + alignment - 1) // alignment * alignment


def _parse(image: bytes, what: str) -> pefile.PE:
    try:
        return pefile.PE(data=image, fast_load=True)
    except pefile.PEFormatError as e:
        raise die(f"{what} is not a PE image: {e}",
                  "point [uki] stub at systemd's EFI stub (linuxx64.efi.stub from systemd-boot-efi)") from e


def symbol_table_span(image: bytes) -> tuple[int, int] | None:
    """Where the COFF symbol table and the string table after it lie in the file (start, end), or None.

    Image files should have none (the PE/COFF spec deprecates it); old systemd
    stubs keep theirs. The string table starts with its own size (4 bytes).
    """
    pe = _parse(image, "the image")
    start, count = pe.FILE_HEADER.PointerToSymbolTable, pe.FILE_HEADER.NumberOfSymbols
    if not start:
        return None
    end = start + SYMBOL_SIZE * count
    if end + 4 <= len(image):
        strings = struct.unpack_from("<I", image, end)[0]
        end += strings if strings >= 4 else 0
    return start, min(end, len(image))


def strip_symbol_table(image: bytes) -> bytes:
    """`image` without its symbol and string tables when they are the last thing in the file (as ukify does).

    Tables anywhere else are left alone: something after them might be data a
    section or the certificate table points at.
    """
    span = symbol_table_span(image)
    if span is None or span[1] != len(image):
        return image
    pe = _parse(image, "the image")
    data = bytearray(image[:span[0]])
    pe.FILE_HEADER.PointerToSymbolTable = 0
    pe.FILE_HEADER.NumberOfSymbols = 0
    pe.FILE_HEADER.Characteristics |= LOCAL_SYMS_STRIPPED
    off = pe.FILE_HEADER.get_file_offset()
    packed = pe.FILE_HEADER.__pack__()
    data[off:off + len(packed)] = packed
    return bytes(data)


def strip_unmapped_tail(image: bytes) -> bytes:
    """`image` without the bytes after its last section's raw data, when nothing points at them.

    systemd's arm64 stub (made with gnu-efi's objcopy -O binary method) ends
    with its ELF .sbat and .sdmagic copied into the file but in no PE section:
    the firmware never loads them, and new sections placed after them would
    leave a gap that Authenticode does not hash. A file with a certificate
    table or a symbol table is left as it is (strip_symbol_table deals with the latter).
    """
    pe = _parse(image, "the image")
    if pe.OPTIONAL_HEADER.DATA_DIRECTORY[SECURITY_DIRECTORY].VirtualAddress or pe.FILE_HEADER.PointerToSymbolTable:
        return image
    end = max(s.PointerToRawData + s.SizeOfRawData for s in pe.sections)
    return image[:end] if len(image) > end else image


def pe_virtual_size(kernel: bytes) -> int:
    """The memory a PE kernel asks for (its SizeOfImage), at least its length; a non-PE kernel: its length.

    ukify gives `.linux` this VirtualSize: systemd 257+ stubs run the kernel's
    PE image in place, so the section must span all the memory the kernel uses.
    """
    try:
        pe = pefile.PE(data=kernel, fast_load=True)
    except pefile.PEFormatError:
        return len(kernel)
    return max(pe.OPTIONAL_HEADER.SizeOfImage, len(kernel))


def _sbat_with_uki_line(pe: pefile.PE, data: bytearray) -> bool:
    """Append ukify's `uki` SBAT line to the stub's .sbat, in place, if the stub leaves room; True if it did.

    Room means: within the section's raw data in the file (nothing moves) and
    below the next section's address in memory. A .sbat that runs into
    `.sdmagic` in memory is what makes the systemd 252 stub stall for about 3 s.
    """
    sections = list(pe.sections)
    for i, s in enumerate(sections):
        if s.Name.rstrip(b"\0") != b".sbat":
            continue
        text = bytes(data[s.PointerToRawData:s.PointerToRawData + min(s.Misc_VirtualSize, s.SizeOfRawData)])
        text = text.rstrip(b"\0")
        if not text.startswith(b"sbat,") or any(ln.startswith(b"uki,") for ln in text.splitlines()):
            return False
        # NUL-terminated, as the stub's own and ukify's merged .sbat are
        new = text + (b"" if text.endswith(b"\n") else b"\n") + UKI_SBAT_LINE.encode() + b"\0"
        limit = s.SizeOfRawData
        if i + 1 < len(sections):
            limit = min(limit, sections[i + 1].VirtualAddress - s.VirtualAddress)
        if len(new) > limit:
            return False
        data[s.PointerToRawData:s.PointerToRawData + s.SizeOfRawData] = new.ljust(s.SizeOfRawData, b"\0")
        s.Misc = s.Misc_PhysicalAddress = s.Misc_VirtualSize = len(new)
        off = s.get_file_offset()
        data[off:off + SECTION_HEADER_SIZE] = s.__pack__()
        return True
    return False


def add_sections(
    image: bytes,
    sections: Sequence[tuple[str, bytes]],
    *,
    timestamp: int = 0,
    what: str = "the stub",
    sbat_uki: bool = False,
) -> bytes:
    """Return `image` with `sections` (name, contents) appended in order, as a consistent PE.

    The stub's trailing symbol and string tables are dropped first, so the new
    sections follow the stub's last one without a gap. Every new section starts
    at the next SectionAlignment boundary after the previous one in memory and
    at the next FileAlignment boundary in the file. `.linux` is code with the
    kernel's own SizeOfImage as its VirtualSize (as ukify writes it), the rest
    read-only data. NumberOfSections, SizeOfImage, SizeOfCode and
    SizeOfInitializedData follow, the TimeDateStamp is `timestamp` and the
    CheckSum is recomputed. With `sbat_uki`, ukify's `uki` line joins the
    stub's .sbat where it fits.
    """
    if not 0 <= timestamp < 1 << 32:
        raise die(f"PE timestamp {timestamp} does not fit in 32 bits",
                  "set [kernel] source_date_epoch to a time before 2106")
    pe = _parse(image, what)
    if not pe.sections:
        raise die(f"{what} has no sections", "use systemd's EFI stub, not a bare PE file")
    if pe.OPTIONAL_HEADER.DATA_DIRECTORY[SECURITY_DIRECTORY].VirtualAddress:
        raise die(f"{what} is signed", "use the unsigned stub: the UKI is signed as a whole, after assembly")
    image = strip_unmapped_tail(strip_symbol_table(image))
    pe = _parse(image, what)
    opt = pe.OPTIONAL_HEADER
    file_align, sect_align = opt.FileAlignment, opt.SectionAlignment
    existing = {s.Name.rstrip(b"\0").decode(errors="replace") for s in pe.sections}

    table_end = pe.sections[-1].get_file_offset() + SECTION_HEADER_SIZE
    room = (opt.SizeOfHeaders - table_end) // SECTION_HEADER_SIZE
    if len(sections) > room:
        raise die(f"{what} has room for {room} more section headers, {len(sections)} are needed",
                  "use a stub whose SizeOfHeaders leaves space after its section table (systemd's does)")
    if not is_padding(image[table_end:table_end + SECTION_HEADER_SIZE * len(sections)]):
        raise die(f"{what} has data right after its section table, where new section headers go",
                  "use an unmodified systemd EFI stub")

    data = bytearray(image)
    data.extend(b"\0" * (round_up(len(data), file_align) - len(data)))
    if sbat_uki:
        _sbat_with_uki_line(pe, data)
    last = pe.sections[-1]
    vaddr = round_up(last.VirtualAddress + last.Misc_VirtualSize, sect_align)
    header_at = table_end
    new_headers = []
    for name, contents in sections:
        raw = name.encode("ascii")
        if not raw or len(raw) > MAX_NAME:
            raise die(f"PE section name {name!r} must be 1 to {MAX_NAME} ASCII characters",
                      "use names like .linux, .cmdline, .osrel")
        if name in existing:
            raise die(f"{what} already has a {name} section", "use a plain systemd EFI stub, not a built UKI")
        existing.add(name)
        raw_size = round_up(len(contents), file_align)
        code = name == ".linux"
        virtual_size = pe_virtual_size(contents) if code else len(contents)
        header = pefile.SectionStructure(pe.__IMAGE_SECTION_HEADER_format__, pe=pe)
        header.__unpack__(b"\0" * header.sizeof())
        header.set_file_offset(header_at)
        header.Name = raw.ljust(MAX_NAME, b"\0")
        header.Misc = header.Misc_PhysicalAddress = header.Misc_VirtualSize = virtual_size
        header.VirtualAddress = vaddr
        header.SizeOfRawData = raw_size
        header.PointerToRawData = len(data) if contents else 0
        header.Characteristics = LINUX_CODE if code else DATA_READONLY
        data.extend(contents)
        data.extend(b"\0" * (raw_size - len(contents)))
        new_headers.append(header)
        header_at += SECTION_HEADER_SIZE
        vaddr = round_up(vaddr + virtual_size, sect_align)
        if code:
            opt.SizeOfCode += raw_size
        else:
            opt.SizeOfInitializedData += raw_size

    pe.FILE_HEADER.NumberOfSections += len(sections)
    pe.FILE_HEADER.TimeDateStamp = timestamp
    opt.SizeOfImage = vaddr
    opt.CheckSum = 0
    for header in new_headers:
        data[header.get_file_offset():header.get_file_offset() + SECTION_HEADER_SIZE] = header.__pack__()
    for struct_ in (pe.FILE_HEADER, opt):
        off = struct_.get_file_offset()
        packed = struct_.__pack__()
        data[off:off + len(packed)] = packed
    return _with_checksum(bytes(data))


def _with_checksum(image: bytes) -> bytes:
    """Write the PE checksum over the final bytes (the field itself counts as zero)."""
    pe = pefile.PE(data=image, fast_load=True)
    off = pe.OPTIONAL_HEADER.get_file_offset() + 64  # CheckSum's place in both PE32 and PE32+
    return image[:off] + struct.pack("<I", checksum(image, off)) + image[off + 4:]


def checksum(image: bytes, field: int) -> int:
    """The PE checksum pefile's generate_checksum() gives, with the dword at `field` left out.

    pefile adds the file's little-endian dwords one at a time with an end-around carry, in Python: a third
    of a second for a 2 MB UKI, on every program edit. That running sum is the plain sum folded into
    1..2**32-1 (0 only when every dword is 0), so it is computed at once; the folding to 16 bits and the
    length that follow are pefile's own, bit for bit (tests/unit/test_pe.py checks both against pefile).
    """
    padded = image + bytes(-len(image) % 4)
    dwords = array("I", padded)  # "I" is 4 bytes wherever CPython runs
    if sys.byteorder == "big":  # pragma: no cover - x86-64 and arm64 hosts are little-endian
        dwords.byteswap()
    skip = field // 4
    total = sum(dwords) - (dwords[skip] if skip < len(dwords) else 0)
    folded = 0 if total == 0 else (total - 1) % 0xFFFFFFFF + 1
    folded = (folded & 0xFFFF) + (folded >> 16)
    folded = (folded + (folded >> 16)) & 0xFFFF
    return folded + len(image)


def read_sections(image: bytes, what: str = "the image") -> dict[str, bytes]:
    """The contents of every section as the file holds them, cut to its VirtualSize.

    The file pads a section to FileAlignment; a section whose VirtualSize is
    larger than its raw data (`.linux`, sized to the kernel's SizeOfImage)
    reads as its raw data, padding included.
    """
    pe = _parse(image, what)
    out = {}
    for s in pe.sections:
        name = s.Name.rstrip(b"\0").decode(errors="replace")
        out[name] = s.get_data()[: min(s.Misc_VirtualSize, s.SizeOfRawData)] if s.SizeOfRawData else b""
    return out


def loaded_sections(image: bytes, what: str = "the image") -> dict[str, bytes]:
    """Every section as a loader maps it: VirtualSize bytes, zero-filled past the raw data.

    This is what systemd's stub (252) measures into PCR 11: the section in
    memory, VirtualSize long.
    """
    pe = _parse(image, what)
    out = {}
    for s in pe.sections:
        name = s.Name.rstrip(b"\0").decode(errors="replace")
        raw = s.get_data()[: s.SizeOfRawData] if s.SizeOfRawData else b""
        out[name] = raw[: s.Misc_VirtualSize].ljust(s.Misc_VirtualSize, b"\0")
    return out


@dataclass(frozen=True)
class SectionRow:
    """One row of a PE section table, as `section_table` reports it."""

    name: str
    virtual_address: int
    virtual_size: int
    raw_pointer: int
    raw_size: int
    characteristics: int


def section_table(image: bytes, what: str = "the image") -> list[SectionRow]:
    """The section table in file order, for reports and tests."""
    pe = _parse(image, what)
    return [SectionRow(s.Name.rstrip(b"\0").decode(errors="replace"), s.VirtualAddress, s.Misc_VirtualSize,
                       s.PointerToRawData, s.SizeOfRawData, s.Characteristics) for s in pe.sections]


def layout_problems(image: bytes, what: str = "the image", aligned_from: int = 0) -> list[str]:
    """What keeps signers and loaders from agreeing on this PE's bytes; empty when the layout is clean.

    Clean means: the headers and the sections' raw data, in order, cover the
    file exactly (the Authenticode certificate table may follow the last
    section), every section's raw data is aligned, addresses ascend and no
    section overlaps the next one in memory, and SizeOfImage covers the last
    section. Section addresses are checked for SectionAlignment from section
    `aligned_from` on: systemd 252's own `.sdmagic` sits at 0x19100 with an
    alignment of 0x200, which loaders accept and a UKI cannot change.
    """
    pe = _parse(image, what)
    opt = pe.OPTIONAL_HEADER
    fa, sa = opt.FileAlignment, opt.SectionAlignment
    problems = []
    if pe.FILE_HEADER.PointerToSymbolTable or pe.FILE_HEADER.NumberOfSymbols:
        problems.append(f"a COFF symbol table at {pe.FILE_HEADER.PointerToSymbolTable:#x}")
    at = round_up(opt.SizeOfHeaders, fa)
    end_va = 0
    for s in pe.sections:
        name = s.Name.rstrip(b"\0").decode(errors="replace")
        if s.SizeOfRawData:
            if s.PointerToRawData != at:
                kind = "gap" if s.PointerToRawData > at else "overlap"
                problems.append(f"{kind} in the file before {name}: {at:#x} to {s.PointerToRawData:#x}")
            if s.PointerToRawData % fa or s.SizeOfRawData % fa:
                problems.append(f"{name}'s raw data is not aligned to {fa:#x}")
            at = s.PointerToRawData + s.SizeOfRawData
        if s.VirtualAddress % sa and pe.sections.index(s) >= aligned_from:
            problems.append(f"{name} at {s.VirtualAddress:#x} is not aligned to {sa:#x}")
        if s.VirtualAddress < end_va:
            problems.append(f"{name} at {s.VirtualAddress:#x} overlaps the section before it in memory "
                            f"(which ends at {end_va:#x})")
        end_va = s.VirtualAddress + s.Misc_VirtualSize
    if opt.SizeOfImage < round_up(end_va, sa):
        problems.append(f"SizeOfImage {opt.SizeOfImage:#x} is below the end of the last section {end_va:#x}")
    security = opt.DATA_DIRECTORY[SECURITY_DIRECTORY]
    end = len(image)
    if security.VirtualAddress:  # a file offset for this one directory
        if security.VirtualAddress != round_up(at, 8):
            problems.append(f"the certificate table at {security.VirtualAddress:#x} does not follow "
                            f"the last section (which ends at {at:#x})")
        end = security.VirtualAddress
        if security.VirtualAddress + security.Size != len(image):
            problems.append("data after the certificate table")
    if round_up(at, 8) != end and at != end:
        problems.append(f"{end - at} bytes after the last section that no section covers ({at:#x} to {end:#x})")
    return problems


def unauthenticated_bytes(image: bytes) -> list[tuple[int, int, str]]:
    """The byte ranges of a signed PE whose change no Authenticode verifier notices, as (start, end, what).

    Authenticode hashes everything but the CheckSum field, the certificate
    table's directory entry and the certificate table itself. Changing the
    directory entry or the signature inside the table breaks verification
    anyway; what remains are the CheckSum (which UEFI firmware does not check)
    and the table's alignment padding after each signature.
    """
    pe = _parse(image, "the image")
    opt = pe.OPTIONAL_HEADER
    checksum = opt.get_file_offset() + 64
    out = [(checksum, checksum + 4, "CheckSum")]
    security = opt.DATA_DIRECTORY[SECURITY_DIRECTORY]
    at, end = security.VirtualAddress, security.VirtualAddress + security.Size
    while at and at + 8 <= end:
        length = struct.unpack_from("<I", image, at)[0]
        if length < 8:
            break
        padded = round_up(length, 8)
        if padded > length:
            out.append((at + length, at + padded, "certificate table padding"))
        at += padded
    return out


def os_release(fields: Iterable[tuple[str, str]] | Mapping[str, str]) -> bytes:
    """os-release text: KEY="value" lines, quoted as os-release(5) asks (a shell-compatible subset)."""
    items = fields.items() if isinstance(fields, Mapping) else fields
    lines = []
    for key, value in items:
        escaped = "".join("\\" + c if c in '\\"$`' else c for c in value)
        lines.append(f'{key}="{escaped}"\n')
    return "".join(lines).encode()


PE_MACHINES = {0x14C: "i386", 0x8664: "x86-64", 0xAA64: "AArch64", 0x1C2: "ARM Thumb", 0x5064: "RISC-V 64"}


def pe_machine(image: bytes) -> int | None:
    """The COFF header's Machine of a PE image (0x8664, 0xaa64), or None if it is not a PE image."""
    if len(image) < 0x40 or image[:2] != b"MZ":
        return None
    offset = struct.unpack_from("<I", image, 0x3C)[0]
    if offset + 6 > len(image) or image[offset:offset + 4] != b"PE\0\0":
        return None
    return int(struct.unpack_from("<H", image, offset + 4)[0])


def is_efi_zboot(image: bytes) -> bool:
    """Whether an image is Linux's EFI zboot image (vmlinuz.efi): MZ, then "zimg" where a plain image has code.

    Only an EFI firmware starts it (it decompresses the kernel and loads it through LoadImage); QEMU's
    -kernel on arm64 does not know the format and starts nothing.
    """
    return len(image) >= 8 and image[:2] == b"MZ" and image[4:8] == b"zimg"


def machine_name(machine: int) -> str:
    return f"{PE_MACHINES.get(machine, 'machine')} ({machine:#06x})"


def bzimage_release(image: bytes) -> str | None:
    """The kernel release as the bzImage's setup header tells it, or None if it has no version string.

    The header's kernel_version field (offset 0x20e) points, relative to 0x200,
    at a string like "6.1.192 (user@host) #1 ..."; its first word is `uname -r`.
    """
    if len(image) < 0x210 or image[0x202:0x206] != b"HdrS":
        return None
    pointer = struct.unpack_from("<H", image, 0x20E)[0]
    if pointer == 0:
        return None
    start = 0x200 + pointer
    end = image.find(b"\0", start, start + 512)
    if start >= len(image) or end < 0:
        return None
    words = image[start:end].decode(errors="replace").split()
    return words[0] if words else None


def build_uki(
    stub: bytes,
    kernel: bytes,
    *,
    cmdline: str,
    os_release_fields: Iterable[tuple[str, str]],
    uname: str | None = None,
    initrd: bytes | None = None,
    timestamp: int = 0,
) -> bytes:
    """A unified kernel image: systemd's stub plus the sections it (and tools like bootctl) read.

    `.linux` goes last, as ukify does, so the small sections keep fixed
    addresses whatever the kernel's size. `.initrd` is for kernels that do
    not embed their initramfs.
    """
    sections: list[tuple[str, bytes]] = [
        (".osrel", os_release(os_release_fields)),
        (".cmdline", cmdline.encode()),
    ]
    if uname:
        sections.append((".uname", uname.encode()))
    if initrd is not None:
        sections.append((".initrd", initrd))
    sections.append((".linux", kernel))
    image = add_sections(stub, sections, timestamp=timestamp, sbat_uki=True)
    problems = layout_problems(image, aligned_from=len(_parse(stub, "the stub").sections))
    if problems:
        raise die(f"the UKI's layout is not clean: {'; '.join(problems)}",
                  "the stub has data outside its sections; use systemd's EFI stub from systemd-boot-efi")
    return image
