"""UKI assembly: the real systemd stub plus a fake kernel, read back with pefile and objdump."""

from __future__ import annotations

import hashlib
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
        assert s.SizeOfRawData >= s.Misc_VirtualSize
        assert s.VirtualAddress >= prev_end
        assert s.PointerToRawData + s.SizeOfRawData <= len(image)
        assert s.Characteristics == pe.DATA_READONLY
        prev_end = s.VirtualAddress + s.Misc_VirtualSize
    assert after.FILE_HEADER.NumberOfSections == len(before.sections) + 4
    assert opt.SizeOfImage == pe.round_up(prev_end, opt.SectionAlignment)
    assert opt.SizeOfInitializedData == before.OPTIONAL_HEADER.SizeOfInitializedData + sum(
        s.SizeOfRawData for s in new)
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
