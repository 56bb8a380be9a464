"""Adding sections to a PE image (the systemd EFI stub), as ukify does, without objcopy.

objcopy stamps the current time into the PE header and makes the caller guess
section addresses; here the new sections are placed right after the stub's
last section (aligned to its SectionAlignment), the header fields that describe
the image are updated, the timestamp is the build's epoch and the checksum is
recomputed, so the same inputs always give the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

import pefile

from tinyuki.errors import die

# Read-only initialized data: what objcopy's `--set-section-flags X=data,readonly` gives
# and what systemd's stub expects of the sections it reads.
DATA_READONLY = (
    pefile.SECTION_CHARACTERISTICS["IMAGE_SCN_CNT_INITIALIZED_DATA"]
    | pefile.SECTION_CHARACTERISTICS["IMAGE_SCN_MEM_READ"]
)
SECTION_HEADER_SIZE = 40
MAX_NAME = 8


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


def add_sections(
    image: bytes,
    sections: Sequence[tuple[str, bytes]],
    *,
    timestamp: int = 0,
    what: str = "the stub",
) -> bytes:
    """Return `image` with `sections` (name, contents) appended in order, as a consistent PE.

    Every new section starts at the next SectionAlignment boundary after the
    previous one in memory and at the next FileAlignment boundary in the file;
    NumberOfSections, SizeOfImage and SizeOfInitializedData follow, the
    TimeDateStamp is `timestamp` and the CheckSum is recomputed.
    """
    if not 0 <= timestamp < 1 << 32:
        raise die(f"PE timestamp {timestamp} does not fit in 32 bits",
                  "set [kernel] source_date_epoch to a time before 2106")
    pe = _parse(image, what)
    if not pe.sections:
        raise die(f"{what} has no sections", "use systemd's EFI stub, not a bare PE file")
    opt = pe.OPTIONAL_HEADER
    file_align, sect_align = opt.FileAlignment, opt.SectionAlignment
    existing = {s.Name.rstrip(b"\0").decode(errors="replace") for s in pe.sections}

    table_end = pe.sections[-1].get_file_offset() + SECTION_HEADER_SIZE
    room = (opt.SizeOfHeaders - table_end) // SECTION_HEADER_SIZE
    if len(sections) > room:
        raise die(f"{what} has room for {room} more section headers, {len(sections)} are needed",
                  "use a stub whose SizeOfHeaders leaves space after its section table (systemd's does)")
    if any(image[table_end:table_end + SECTION_HEADER_SIZE * len(sections)]):
        raise die(f"{what} has data right after its section table, where new section headers go",
                  "use an unmodified systemd EFI stub")

    data = bytearray(image)
    data.extend(b"\0" * (round_up(len(data), file_align) - len(data)))
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
        header = pefile.SectionStructure(pe.__IMAGE_SECTION_HEADER_format__, pe=pe)
        header.__unpack__(b"\0" * header.sizeof())
        header.set_file_offset(header_at)
        header.Name = raw.ljust(MAX_NAME, b"\0")
        header.Misc = header.Misc_PhysicalAddress = header.Misc_VirtualSize = len(contents)
        header.VirtualAddress = vaddr
        header.SizeOfRawData = raw_size
        header.PointerToRawData = len(data) if contents else 0
        header.Characteristics = DATA_READONLY
        data.extend(contents)
        data.extend(b"\0" * (raw_size - len(contents)))
        new_headers.append(header)
        header_at += SECTION_HEADER_SIZE
        vaddr = round_up(vaddr + len(contents), sect_align)
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
    checksum = pe.generate_checksum()
    off = pe.OPTIONAL_HEADER.get_file_offset() + 64  # CheckSum's place in both PE32 and PE32+
    return image[:off] + struct.pack("<I", checksum) + image[off + 4:]


def read_sections(image: bytes, what: str = "the image") -> dict[str, bytes]:
    """The contents of every section, cut to its VirtualSize (the file pads to FileAlignment)."""
    pe = _parse(image, what)
    out = {}
    for s in pe.sections:
        name = s.Name.rstrip(b"\0").decode(errors="replace")
        out[name] = s.get_data()[: s.Misc_VirtualSize] if s.SizeOfRawData else b""
    return out


def os_release(fields: Iterable[tuple[str, str]] | Mapping[str, str]) -> bytes:
    """os-release text: KEY="value" lines, quoted as os-release(5) asks (a shell-compatible subset)."""
    items = fields.items() if isinstance(fields, Mapping) else fields
    lines = []
    for key, value in items:
        escaped = "".join("\\" + c if c in '\\"$`' else c for c in value)
        lines.append(f'{key}="{escaped}"\n')
    return "".join(lines).encode()


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
    return add_sections(stub, sections, timestamp=timestamp)
