"""Secure Boot for real: the e2e kernel's UKI, signed with `doit keys`' db key, booted by OVMF enforcing it.

The signed build shares the session build's artifact cache (tests/e2e/conftest.py),
so only the signing and the boots run here. A boot that must be refused has to
show the firmware's refusal on the console and end in tinyuki's own error (no
traceback); the one that must succeed has to show the kernel reporting Secure
Boot enabled and the program running.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pefile
import pytest

from tests.e2e.conftest import TARBALL, doit
from tests.helpers.doit import output, run_dodo, variables
from tinyuki import secureboot
from tinyuki.formats import pe
from tinyuki.util.fs import read_json, sha256_file

MARKER = "tinyuki: init started"

pytestmark = pytest.mark.skipif(
    not TARBALL.exists(), reason=f"{TARBALL} missing: scripts/setup.sh installs linux-source-6.1"
)


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    assert not missing, f"{', '.join(missing)} missing: scripts/setup.sh installs them"
    assert secureboot.SECBOOT_CODE.is_file(), f"{secureboot.SECBOOT_CODE} missing: apt-get install ovmf"


@pytest.fixture(scope="module")
def signed(build: dict[str, Path]) -> dict[str, Path]:
    """The session build's profile plus [sign] with the db key of `doit keys`, in a build dir of its own."""
    need("sbsign", "sbverify", "osslsigncode", "openssl", "faketime")
    top = build["top"]
    keys = top / "sb-keys"
    out = doit(build, ["keys", f"keys_dir={keys}"])
    assert "OVMF variables with PK, KEK and db enrolled" in out
    other = top / "sb-other"
    secureboot.make_keys(other)
    profile = top / "signed.toml"
    profile.write_text(build["profile"].read_text()
                       + f'\n[sign]\nkey = "{keys / "db.key"}"\ncert = "{keys / "db.crt"}"\n')
    paths = {"profile": profile, "build": top / "signed", "cache": build["cache"], "top": top, "keys": keys,
             "other": other}
    out = doit(paths, [])
    assert "tinyuki.signed.efi" in out
    return paths


def boot(paths: dict[str, Path], *args: str) -> tuple[int, str]:
    words = ("boot", "secureboot=1", f"keys_dir={paths['keys']}", "accel=tcg", *args,
             *variables(profile=paths["profile"], build_dir=paths["build"], cache_dir=paths["cache"]))
    proc = run_dodo(*words, timeout=600)
    return proc.returncode, output(proc)


def assert_refused(paths: dict[str, Path], image: Path) -> None:
    code, out = boot(paths, f"efi={image}")
    assert code != 0, out[-3000:]
    assert "Access Denied" in out or "Security Violation" in out, out[-3000:]
    assert "boot refused: the firmware refused to start the image" in out, out[-3000:]
    assert "Traceback" not in out and MARKER not in out, out[-3000:]


def test_the_unsigned_uki_has_no_gaps_and_the_signed_one_verifies(signed: dict[str, Path],
                                                                  build: dict[str, Path]) -> None:
    unsigned = signed["build"] / "tinyuki.efi"
    assert sha256_file(unsigned) == sha256_file(build["build"] / "tinyuki.efi")  # signing leaves it as it was
    listing = subprocess.run(["sbverify", "--list", unsigned], capture_output=True, text=True)
    assert "gap" not in listing.stdout + listing.stderr and "data remaining" not in listing.stdout + listing.stderr
    data = unsigned.read_bytes()
    assert pe.layout_problems(data, aligned_from=8) == []  # the 252 stub's own 8 sections keep their addresses
    image = signed["build"] / "tinyuki.signed.efi"
    cert = signed["keys"] / "db.crt"
    check = subprocess.run(["sbverify", "--cert", cert, image], capture_output=True, text=True)
    assert check.returncode == 0 and "gap" not in check.stdout + check.stderr, check.stdout + check.stderr
    ossl = subprocess.run(["osslsigncode", "verify", "-CAfile", cert, "-in", image], capture_output=True, text=True)
    assert ossl.returncode == 0 and "MISMATCH" not in ossl.stdout, ossl.stdout + ossl.stderr
    assert pe.read_sections(image.read_bytes()) == pe.read_sections(data)
    linux = pefile.PE(str(image), fast_load=True).sections[-1]
    kernel = pefile.PE(str(signed["build"] / "bzImage"), fast_load=True)
    assert linux.Name.rstrip(b"\0") == b".linux" and linux.IMAGE_SCN_CNT_CODE
    assert linux.Misc_VirtualSize == kernel.OPTIONAL_HEADER.SizeOfImage


def test_the_manifest_lists_the_signed_uki_and_the_expected_pcr11(signed: dict[str, Path],
                                                                  build: dict[str, Path]) -> None:
    manifest = read_json(signed["build"] / "manifest.json")
    assert manifest["artifacts"]["uki-signed"]["sha256"] == sha256_file(signed["build"] / "tinyuki.signed.efi")
    assert manifest["signing"]["certificate"]["subject"].endswith("tinyuki test db")
    unsigned_manifest = read_json(build["build"] / "manifest.json")
    assert "uki-signed" not in unsigned_manifest["artifacts"] and "signing" not in unsigned_manifest
    pcr = manifest["measured_boot"]
    assert pcr == unsigned_manifest["measured_boot"]  # the signature is not measured
    sections = secureboot.measured_sections((signed["build"] / "tinyuki.efi").read_bytes())
    assert pcr["banks"]["sha256"] == secureboot.pcr11_replay(sections)


def test_signing_again_gives_the_same_bytes(signed: dict[str, Path]) -> None:
    image = signed["build"] / "tinyuki.signed.efi"
    before = sha256_file(image)
    image.unlink()
    doit(signed, ["sign"])
    assert sha256_file(image) == before


def test_the_signed_uki_boots_with_secure_boot_enforcing(signed: dict[str, Path]) -> None:
    code, out = boot(signed)
    assert code == 0, out[-3000:]
    assert "secureboot: Secure boot enabled" in out and MARKER in out
    assert "boot: secure boot: Secure Boot enabled" in out


def test_the_unsigned_uki_is_refused(signed: dict[str, Path]) -> None:
    assert_refused(signed, signed["build"] / "tinyuki.efi")


def test_a_uki_signed_by_a_key_not_in_db_is_refused(signed: dict[str, Path], tmp_path: Path) -> None:
    image = tmp_path / "other.efi"
    key, cert = secureboot.key_paths(signed["other"], "db")
    secureboot.sign_uki(signed["build"] / "tinyuki.efi", image, secureboot.SignRequest(key, cert), epoch=1700000000)
    assert_refused(signed, image)


def changed_at(image: Path, where: str) -> int:
    data = image.read_bytes()
    parsed = pefile.PE(data=data, fast_load=True)
    by_name = {s.Name.rstrip(b"\0").decode(): s for s in parsed.sections}
    security = parsed.OPTIONAL_HEADER.DATA_DIRECTORY[pe.SECURITY_DIRECTORY]
    return {
        "dos header": 0x40,
        "section table": by_name[".linux"].get_file_offset() + 16,
        ".text": by_name[".text"].PointerToRawData + 0x100,
        ".osrel": by_name[".osrel"].PointerToRawData,
        ".cmdline": by_name[".cmdline"].PointerToRawData + 3,
        ".linux": by_name[".linux"].PointerToRawData + by_name[".linux"].SizeOfRawData // 2,
        "signature": security.VirtualAddress + security.Size // 2,
    }[where]


@pytest.mark.parametrize("where", ["dos header", "section table", ".text", ".osrel", ".cmdline", ".linux",
                                   "signature"])
def test_a_signed_uki_with_one_byte_changed_is_refused(signed: dict[str, Path], tmp_path: Path, where: str) -> None:
    original = signed["build"] / "tinyuki.signed.efi"
    data = bytearray(original.read_bytes())
    data[changed_at(original, where)] ^= 0x01
    image = tmp_path / "changed.efi"
    image.write_bytes(data)
    assert_refused(signed, image)


def test_a_changed_checksum_still_boots_as_authenticode_leaves_it_out(signed: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    """The one place besides the certificate table's padding a change goes unnoticed, by the format's design."""
    original = signed["build"] / "tinyuki.signed.efi"
    data = bytearray(original.read_bytes())
    start, _end, what = pe.unauthenticated_bytes(bytes(data))[0]
    assert what == "CheckSum"
    data[start] ^= 0x01
    image = tmp_path / "checksum.efi"
    image.write_bytes(data)
    code, out = boot(signed, f"efi={image}")
    assert code == 0 and "secureboot: Secure boot enabled" in out, out[-3000:]


def test_an_osslsigncode_signed_uki_boots(signed: dict[str, Path], tmp_path: Path) -> None:
    key, cert = secureboot.key_paths(signed["keys"], "db")
    image = tmp_path / "ossl.efi"
    subprocess.run(["osslsigncode", "sign", "-certs", cert, "-key", key, "-in", signed["build"] / "tinyuki.efi",
                    "-out", image], check=True, capture_output=True)
    code, out = boot(signed, f"efi={image}")
    assert code == 0, out[-3000:]
    assert "secureboot: Secure boot enabled" in out and MARKER in out


def test_secure_boot_without_a_signed_uki_is_a_clear_error(build: dict[str, Path], signed: dict[str, Path]) -> None:
    paths = {**build, "keys": signed["keys"]}
    code, out = boot(paths)
    assert code != 0 and "Traceback" not in out
    assert "[sign]" in out and "efi=" in out
