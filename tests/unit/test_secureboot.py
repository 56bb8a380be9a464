"""Secure Boot logic without signing anything: the [sign] profile section, console verdicts, PCR 11 replay."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.unit.test_pe import EPOCH, STUB, fake_bzimage
from tinyuki import secureboot
from tinyuki.config.profile import load_profile
from tinyuki.errors import TinyukiError
from tinyuki.formats import pe

ROOT = Path(__file__).resolve().parents[2]

# OVMF 2022.11 (Debian 12) on the serial console, refusing an image that db does not allow
REFUSED = [
    'BdsDxe: loading Boot0001 "UEFI Non-Block Boot Device" from PciRoot(0x0)/Pci(0x1,0x0)',
    'BdsDxe: failed to load Boot0001 "UEFI Non-Block Boot Device" from PciRoot(0x0)/Pci(0x1,0x0): Access Denied',
    'BdsDxe: failed to start Boot0002 "EFI Internal Shell" from Fv(7CB8)/FvFile(7C04): Security Violation',
    "BdsDxe: No bootable option or device was found.",
]
BOOTED = [
    "EFI stub: UEFI Secure Boot is enabled.",
    "[    0.000000] Linux version 6.1.192 (tinyuki@tinyuki) #1 @1700000000",
    "[    0.000000] secureboot: Secure boot enabled",
    "tinyuki: init started",
]


def profile(tmp_path: Path, sign: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text('[source]\nurls = ["/x/linux.tar.xz"]\nsha256 = "' + "a" * 64 + '"\n'
                    '[kernel]\nfragments = ["base"]\n' + sign)
    return path


def test_the_firmware_refusal_is_found_on_the_console() -> None:
    assert secureboot.firmware_refusal(REFUSED) == REFUSED[1]
    assert secureboot.firmware_refusal(BOOTED) is None
    assert secureboot.firmware_refusal(["Security Violation"]) == "Security Violation"


def test_what_the_kernel_says_about_secure_boot() -> None:
    assert secureboot.kernel_secure_boot(BOOTED) is True
    assert secureboot.kernel_secure_boot(["[    0.000000] secureboot: Secure boot disabled"]) is False
    assert secureboot.kernel_secure_boot(["[    0.000000] secureboot: Secure boot could not be determined"]) is False
    assert secureboot.kernel_secure_boot(REFUSED) is None


def test_encrypted_keys_are_recognised() -> None:
    assert secureboot.is_encrypted(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMII...")
    assert secureboot.is_encrypted(b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES")
    assert not secureboot.is_encrypted(b"-----BEGIN PRIVATE KEY-----\nMII...")


def test_sbsign_runs_with_the_clock_stopped_at_the_epoch() -> None:
    assert secureboot.faketime_spec(EPOCH) == "2023-11-14 22:13:20"
    cmd = secureboot.sbsign_command(Path("db.key"), Path("db.crt"), Path("in.efi"), Path("out.efi"), EPOCH)
    assert cmd[:3] == ["faketime", "-f", "2023-11-14 22:13:20"] and cmd[3] == "sbsign" and "--engine" not in cmd
    token = secureboot.sbsign_command("pkcs11:token=t;object=db", Path("db.crt"), Path("i"), Path("o"), EPOCH)
    assert token[token.index("--engine") + 1] == "pkcs11" and token[token.index("--key") + 1].startswith("pkcs11:")


def test_pcr11_replay_is_what_the_252_stub_extends() -> None:
    """Name with its NUL, then the data, per measured section in the stub's order; `.uname` is not measured."""
    image = pe.build_uki(STUB.read_bytes(), fake_bzimage(), cmdline="console=ttyS0", os_release_fields=[("ID", "t")],
                         uname="6.1.192", timestamp=EPOCH)
    sections = secureboot.measured_sections(image)
    assert [n for n, _ in sections] == [".linux", ".osrel", ".cmdline"]
    pcr = bytes(32)
    for name, data in sections:
        for blob in ((name + "\0").encode(), data):
            pcr = hashlib.sha256(pcr + hashlib.sha256(blob).digest()).digest()
    assert secureboot.pcr11_replay(sections) == pcr.hex()
    assert len(secureboot.pcr11_replay(sections, "sha1")) == 40
    other = pe.build_uki(STUB.read_bytes(), fake_bzimage(), cmdline="console=ttyS0 quiet",
                         os_release_fields=[("ID", "t")], uname="6.1.192", timestamp=EPOCH)
    assert secureboot.pcr11_replay(secureboot.measured_sections(other)) != pcr.hex()


def test_sign_section_needs_key_and_cert(tmp_path: Path) -> None:
    (tmp_path / "db.key").write_text("key\n")
    (tmp_path / "db.crt").write_text("cert\n")
    p = load_profile(str(profile(tmp_path, "")), ROOT)
    assert not p.sign.enabled
    on = load_profile(str(profile(tmp_path, f'[sign]\nkey = "{tmp_path}/db.key"\ncert = "{tmp_path}/db.crt"\n'
                                               'passphrase = "env:TINYUKI_PASS"\n')), ROOT)
    assert on.sign.enabled and on.sign.key == tmp_path / "db.key" and on.sign.passphrase == "env:TINYUKI_PASS"
    with pytest.raises(TinyukiError, match="needs both key and cert; cert is missing"):
        load_profile(str(profile(tmp_path, f'[sign]\nkey = "{tmp_path}/db.key"\n')), ROOT)
    with pytest.raises(TinyukiError, match=r"key file .*nope.key does not exist") as e:
        load_profile(str(profile(tmp_path, f'[sign]\nkey = "{tmp_path}/nope.key"\ncert = "{tmp_path}/db.crt"\n')),
                     ROOT)
    assert "doit keys" in e.value.render()
    with pytest.raises(TinyukiError, match="env:VARIABLE or file:PATH"):
        load_profile(str(profile(tmp_path, f'[sign]\nkey = "{tmp_path}/db.key"\ncert = "{tmp_path}/db.crt"\n'
                                           'passphrase = "hunter2"\n')), ROOT)
    relative = load_profile(str(profile(tmp_path, f'[sign]\nkey = "{tmp_path}/db.key"\ncert = "{tmp_path}/db.crt"\n'
                                                  'passphrase = "file:pass.txt"\n')), ROOT)
    assert relative.sign.passphrase == f"file:{tmp_path}/pass.txt"  # from the profile's directory
    token = load_profile(str(profile(tmp_path, '[sign]\nkey = "pkcs11:token=t;object=db"\n'
                                               f'cert = "{tmp_path}/db.crt"\n')), ROOT)
    assert token.sign.pkcs11 and token.sign.key == "pkcs11:token=t;object=db"


def test_secure_boot_verdict() -> None:
    assert secureboot.secure_boot_verdict(BOOTED, program_ran=True).ok
    refused = secureboot.secure_boot_verdict(REFUSED, program_ran=False)
    assert not refused.ok and "refused" in refused.reason and "Access Denied" in refused.reason
    off = secureboot.secure_boot_verdict(["[    0.000000] secureboot: Secure boot disabled", "tinyuki: init started"],
                                         program_ran=True)
    assert not off.ok and "disabled" in off.reason
    silent = secureboot.secure_boot_verdict(["tinyuki: init started"], program_ran=True)
    assert not silent.ok and "did not report" in silent.reason
    assert not secureboot.secure_boot_verdict(BOOTED, program_ran=False).ok


def test_firmware_files_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(TinyukiError, match="doit keys"):
        secureboot.firmware_files(tmp_path)
    (tmp_path / secureboot.ENROLLED_VARS).write_bytes(b"vars")
    with pytest.raises(TinyukiError, match="Secure Boot build"):
        secureboot.firmware_files(tmp_path, code=tmp_path / "missing.fd")
    code = tmp_path / "code.fd"
    code.write_bytes(b"code")
    assert secureboot.firmware_files(tmp_path, code=code) == (code, tmp_path / secureboot.ENROLLED_VARS)
