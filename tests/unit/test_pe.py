"""UKI assembly: the real systemd stub plus a fake kernel, read back with pefile and objdump."""

from __future__ import annotations

import hashlib
import itertools
import shutil
import struct
import subprocess
from pathlib import Path

import pefile
import pytest

from tinyuki.errors import TinyukiError
from tinyuki.formats import pe

STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
EPOCH = 1700000000


def fake_bzimage(release: str = "6.1.192", size: int = 300_000) -> bytes:
    """Enough of a bzImage for the UKI: the setup header's magic and kernel_version pointer."""
    blob = bytearray(hashlib.sha256(b"kernel").digest() * (size // 32))
    blob[0x202:0x206] = b"HdrS"
    version = f"{release} (tinyuki@tinyuki) #1 SMP\0".encode()
    at = 0x3000
    blob[at:at + len(version)] = version
    struct.pack_into("<H", blob, 0x20E, at - 0x200)
    return bytes(blob)


@pytest.fixture(scope="module")
def stub() -> bytes:
    return STUB.read_bytes()


def make_uki(stub: bytes, **kw: object) -> bytes:
    args: dict = {
        "cmdline": "console=ttyS0 panic=-1",
        "os_release_fields": [("ID", "tinyuki"), ("NAME", "tiny uki"), ("VERSION_ID", "1")],
        "uname": "6.1.192",
        "timestamp": EPOCH,
    }
    args.update(kw)
    return pe.build_uki(stub, fake_bzimage(), **args)


def test_sections_and_contents_read_back(stub: bytes) -> None:
    kernel = fake_bzimage()
    image = pe.build_uki(stub, kernel, cmdline="console=ttyS0 quiet",
                         os_release_fields=[("ID", "tinyuki")], uname="6.1.192", timestamp=EPOCH)
    got = pe.read_sections(image)
    assert got[".linux"] == kernel
    assert got[".cmdline"] == b"console=ttyS0 quiet"
    assert got[".osrel"] == b'ID="tinyuki"\n'
    assert got[".uname"] == b"6.1.192"
    assert ".initrd" not in got
    # the stub's own sections are untouched
    for name, data in pe.read_sections(stub).items():
        assert got[name] == data
    names = [s.Name.rstrip(b"\0").decode() for s in pefile.PE(data=image).sections]
    assert names[-4:] == [".osrel", ".cmdline", ".uname", ".linux"]


def test_initrd_section_for_kernels_without_embedded_initramfs(stub: bytes) -> None:
    initrd = b"\x1f\x8b" + bytes(range(256)) * 10
    got = pe.read_sections(make_uki(stub, initrd=initrd))
    assert got[".initrd"] == initrd


def test_layout_follows_the_stub_headers(stub: bytes) -> None:
    image = make_uki(stub)
    before = pefile.PE(data=stub)
    after = pefile.PE(data=image)
    opt = after.OPTIONAL_HEADER
    new = after.sections[len(before.sections):]
    last = before.sections[-1]
    assert new[0].VirtualAddress == pe.round_up(last.VirtualAddress + last.Misc_VirtualSize,
                                                before.OPTIONAL_HEADER.SectionAlignment)
    prev_end = 0
    for s in after.sections[len(before.sections):]:
        assert s.VirtualAddress % opt.SectionAlignment == 0
        assert s.PointerToRawData % opt.FileAlignment == 0
        assert s.SizeOfRawData % opt.FileAlignment == 0
        assert s.SizeOfRawData >= s.Misc_VirtualSize  # the fake kernel is no PE: its VirtualSize is its length
        assert s.VirtualAddress >= prev_end
        assert s.PointerToRawData + s.SizeOfRawData <= len(image)
        linux = s.Name.rstrip(b"\0") == b".linux"
        assert s.Characteristics == (pe.LINUX_CODE if linux else pe.DATA_READONLY)
        prev_end = s.VirtualAddress + s.Misc_VirtualSize
    assert after.FILE_HEADER.NumberOfSections == len(before.sections) + 4
    assert opt.SizeOfImage == pe.round_up(prev_end, opt.SectionAlignment)
    assert opt.SizeOfInitializedData == before.OPTIONAL_HEADER.SizeOfInitializedData + sum(
        s.SizeOfRawData for s in new[:-1])
    assert opt.SizeOfCode == before.OPTIONAL_HEADER.SizeOfCode + new[-1].SizeOfRawData
    assert after.sections[-1].get_file_offset() + 40 <= opt.SizeOfHeaders
    assert after.OPTIONAL_HEADER.AddressOfEntryPoint == before.OPTIONAL_HEADER.AddressOfEntryPoint


def test_timestamp_and_checksum(stub: bytes) -> None:
    image = make_uki(stub, timestamp=EPOCH)
    parsed = pefile.PE(data=image)
    assert parsed.FILE_HEADER.TimeDateStamp == EPOCH
    assert parsed.OPTIONAL_HEADER.CheckSum != 0
    assert parsed.verify_checksum()
    assert pefile.PE(data=make_uki(stub, timestamp=0)).FILE_HEADER.TimeDateStamp == 0


def test_deterministic(stub: bytes) -> None:
    assert make_uki(stub) == make_uki(stub)
    assert make_uki(stub) != make_uki(stub, cmdline="console=ttyS0")


def test_objdump_lists_the_sections(stub: bytes, tmp_path: Path) -> None:
    objdump = shutil.which("objdump")
    assert objdump, "binutils (objdump) is part of build-essential"
    path = tmp_path / "uki.efi"
    path.write_bytes(make_uki(stub, initrd=b"initrd"))
    out = subprocess.run([objdump, "-h", str(path)], capture_output=True, text=True, check=True).stdout
    for name in (".osrel", ".cmdline", ".uname", ".initrd", ".linux"):
        assert f" {name} " in out


def fake_pe_kernel(size_of_image: int, length: int = 40_000) -> bytes:
    """A PE kernel (what a bzImage with CONFIG_EFI_STUB is) asking for `size_of_image` bytes of memory."""
    stub = pefile.PE(data=STUB.read_bytes(), fast_load=True)
    stub.OPTIONAL_HEADER.SizeOfImage = size_of_image
    head = stub.write()[:4096]
    return head + bytes(length - len(head))


def test_the_stub_symbol_table_is_stripped_and_nothing_is_left_uncovered(stub: bytes) -> None:
    """Debian's 252 stub ends with its COFF symbol and string tables; in a UKI they were a 12.8 KB hole."""
    span = pe.symbol_table_span(stub)
    assert span is not None and span[1] == len(stub), "the test needs a stub with a trailing symbol table"
    image = make_uki(stub)
    parsed = pefile.PE(data=image)
    assert parsed.FILE_HEADER.PointerToSymbolTable == 0 and parsed.FILE_HEADER.NumberOfSymbols == 0
    assert parsed.FILE_HEADER.Characteristics & pe.LOCAL_SYMS_STRIPPED
    assert pe.layout_problems(image, aligned_from=len(pefile.PE(data=stub).sections)) == []
    # headers plus every section's raw data cover the file exactly, in ascending order
    at = parsed.OPTIONAL_HEADER.SizeOfHeaders
    for s in parsed.sections:
        assert s.PointerToRawData == at, s.Name
        at += s.SizeOfRawData
    assert at == len(image)
    # ascending addresses, no overlap in memory (the 252 stub stalls when .sbat runs into .sdmagic)
    ends = [(s.VirtualAddress, s.VirtualAddress + s.Misc_VirtualSize) for s in parsed.sections]
    for (_, end), (start, _) in itertools.pairwise(ends):
        assert end <= start
    # the stub's bytes before its symbol table are kept as they were
    assert pe.read_sections(image)[".text"] == pe.read_sections(stub)[".text"]


def test_layout_problems_names_the_gap_of_an_unstripped_stub(stub: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the UKI looked like before the fix: the symbol table left between .sdmagic and .osrel."""
    n = len(pefile.PE(data=stub).sections)
    assert pe.layout_problems(make_uki(stub), aligned_from=n) == []
    monkeypatch.setattr(pe, "strip_symbol_table", lambda image: image)
    with pytest.raises(TinyukiError, match=r"gap in the file before \.osrel"):
        make_uki(stub)
    old = pe.add_sections(stub, [(".osrel", b"ID=x\n"), (".linux", fake_bzimage())])
    problems = pe.layout_problems(old, aligned_from=n)
    assert any("symbol table" in p for p in problems)
    assert any(p.startswith("gap in the file before .osrel") for p in problems), problems
    # without the alignment exemption the stub's own .sdmagic is named too
    assert any(".sdmagic" in p for p in pe.layout_problems(old))


def test_a_symbol_table_not_at_the_end_is_left_alone(stub: bytes) -> None:
    image = stub + b"trailing data"
    assert pe.strip_symbol_table(image) == image
    assert pe.strip_symbol_table(stub) != stub
    assert pe.symbol_table_span(pe.strip_symbol_table(stub)) is None


def test_linux_is_code_sized_to_the_kernels_size_of_image(stub: bytes) -> None:
    kernel = fake_pe_kernel(size_of_image=0x300000)
    image = pe.build_uki(stub, kernel, cmdline="x", os_release_fields=[("ID", "t")], timestamp=EPOCH)
    linux = pefile.PE(data=image).sections[-1]
    assert linux.Name.rstrip(b"\0") == b".linux"
    assert linux.Characteristics == pe.LINUX_CODE
    assert linux.IMAGE_SCN_CNT_CODE and linux.IMAGE_SCN_MEM_READ and not linux.IMAGE_SCN_MEM_WRITE
    assert linux.Misc_VirtualSize == 0x300000
    assert linux.SizeOfRawData == pe.round_up(len(kernel), 512)
    assert pefile.PE(data=image).OPTIONAL_HEADER.SizeOfImage == pe.round_up(linux.VirtualAddress + 0x300000, 512)
    # the file holds the kernel; a loader maps it zero-filled to the VirtualSize
    assert pe.read_sections(image)[".linux"][:len(kernel)] == kernel
    loaded = pe.loaded_sections(image)[".linux"]
    assert len(loaded) == 0x300000 and loaded[:len(kernel)] == kernel and not any(loaded[len(kernel):])
    # a kernel whose SizeOfImage is below its length keeps its length
    small = fake_pe_kernel(size_of_image=4096)
    assert pe.pe_virtual_size(small) == len(small)


def stub_with_sbat_room(stub: bytes, room: int) -> bytes:
    """The real stub with .sdmagic moved in memory so that .sbat may grow to `room` bytes."""
    parsed = pefile.PE(data=stub, fast_load=True)
    names = [s.Name.rstrip(b"\0") for s in parsed.sections]
    sbat, magic = parsed.sections[names.index(b".sbat")], parsed.sections[names.index(b".sdmagic")]
    magic.VirtualAddress = sbat.VirtualAddress + room
    parsed.OPTIONAL_HEADER.SizeOfImage = pe.round_up(magic.VirtualAddress + magic.Misc_VirtualSize, 512)
    return parsed.write()


def test_sbat_gets_the_uki_line_only_where_the_stub_leaves_room(stub: bytes) -> None:
    original = pe.read_sections(stub)[".sbat"]
    # Debian's 252 stub: .sbat is 226 bytes and .sdmagic follows 256 bytes later: no room, kept as it is
    assert pe.read_sections(make_uki(stub))[".sbat"] == original
    roomy = stub_with_sbat_room(stub, 0x200)
    got = pe.read_sections(make_uki(roomy))[".sbat"]
    assert got == original.rstrip(b"\0") + pe.UKI_SBAT_LINE.encode() + b"\0"
    assert got.decode().splitlines()[0].startswith("sbat,1,")
    image = make_uki(roomy)
    assert pe.layout_problems(image, aligned_from=len(pefile.PE(data=stub).sections)) == []
    parsed = pefile.PE(data=image)
    sbat = next(s for s in parsed.sections if s.Name.rstrip(b"\0") == b".sbat")
    magic = next(s for s in parsed.sections if s.Name.rstrip(b"\0") == b".sdmagic")
    assert sbat.VirtualAddress + sbat.Misc_VirtualSize <= magic.VirtualAddress
    # the line must fit below the next section in memory, not just in the raw data
    tight = stub_with_sbat_room(stub, len(original.rstrip(b"\0")) + len(pe.UKI_SBAT_LINE))
    assert pe.read_sections(make_uki(tight))[".sbat"] == original


def test_refuses_a_signed_stub(stub: bytes) -> None:
    parsed = pefile.PE(data=stub, fast_load=True)
    security = parsed.OPTIONAL_HEADER.DATA_DIRECTORY[pe.SECURITY_DIRECTORY]
    security.VirtualAddress, security.Size = len(stub), 8
    with pytest.raises(TinyukiError, match="is signed"):
        pe.add_sections(parsed.write() + bytes(8), [(".a", b"x")])


def test_refuses_more_sections_than_header_room(stub: bytes) -> None:
    many = [(f".s{i}", b"x") for i in range(20)]
    with pytest.raises(TinyukiError, match="room for"):
        pe.add_sections(stub, many)


def test_refuses_bad_names_and_duplicates(stub: bytes) -> None:
    with pytest.raises(TinyukiError, match="1 to 8"):
        pe.add_sections(stub, [(".waytoolongname", b"x")])
    with pytest.raises(TinyukiError, match="already has"):
        pe.add_sections(stub, [(".text", b"x")])
    with pytest.raises(TinyukiError, match="already has"):
        pe.add_sections(stub, [(".a", b"x"), (".a", b"y")])


def test_refuses_non_pe_and_huge_timestamps(stub: bytes) -> None:
    with pytest.raises(TinyukiError, match="not a PE image"):
        pe.add_sections(b"\x7fELF" + bytes(500), [(".a", b"x")])
    with pytest.raises(TinyukiError, match="32 bits"):
        pe.add_sections(stub, [(".a", b"x")], timestamp=1 << 32)


def test_os_release_quoting() -> None:
    text = pe.os_release([("NAME", 'tiny "uki"'), ("PRETTY_NAME", "a $b `c` \\d")])
    assert text == b'NAME="tiny \\"uki\\""\nPRETTY_NAME="a \\$b \\`c\\` \\\\d"\n'


def test_bzimage_release() -> None:
    assert pe.bzimage_release(fake_bzimage("6.1.192-tiny")) == "6.1.192-tiny"
    assert pe.bzimage_release(b"\0" * 4096) is None
    no_pointer = bytearray(fake_bzimage())
    struct.pack_into("<H", no_pointer, 0x20E, 0)
    assert pe.bzimage_release(bytes(no_pointer)) is None


def _pefile_checksum(image: bytes) -> int:
    return pefile.PE(data=image, fast_load=True).generate_checksum()


@pytest.mark.parametrize("tail", [b"", b"\x01", b"\xff\xfe", b"abc", bytes(range(256)) * 37 + b"\x07"])
def test_checksum_is_pefile_s_for_any_length_and_content(stub: bytes, tail: bytes) -> None:
    image = stub + tail
    field = pefile.PE(data=image, fast_load=True).OPTIONAL_HEADER.get_file_offset() + 64
    assert pe.checksum(image, field) == _pefile_checksum(image)
    noise = b"".join(hashlib.sha256(tail + i.to_bytes(2, "little")).digest() for i in range(128))
    assert pe.checksum(image + noise, field) == _pefile_checksum(image + noise)


def test_checksum_where_the_running_sum_folds_to_all_ones(stub: bytes) -> None:
    """An overlay dword that makes the dwords' sum a multiple of 2**32-1: the end-around sum is then
    0xFFFFFFFF, not 0 (the corner a plain modulo would get wrong)."""
    field = pefile.PE(data=stub, fast_load=True).OPTIONAL_HEADER.get_file_offset() + 64
    image = stub + bytes(-len(stub) % 4)
    dwords = struct.unpack(f"<{len(image) // 4}I", image)
    total = sum(dwords) - dwords[field // 4]
    image += struct.pack("<I", -total % 0xFFFFFFFF)
    assert pe.checksum(image, field) == _pefile_checksum(image) == 0xFFFF + len(image)
    assert pe.checksum(bytes(64), 0) == 64  # every dword 0: the one case the sum stays 0


def test_uki_checksum_matches_pefile_s_over_a_whole_uki(stub: bytes) -> None:
    image = make_uki(stub, timestamp=EPOCH)
    field = pefile.PE(data=image, fast_load=True).OPTIONAL_HEADER.get_file_offset() + 64
    assert struct.unpack_from("<I", image, field)[0] == _pefile_checksum(image)
