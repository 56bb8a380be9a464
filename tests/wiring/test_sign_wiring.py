"""Signing against the real clients: sbsign signs, sbverify, osslsigncode and pefile read it back.

A UKI from the real systemd stub and a stand-in kernel is signed with test
keys made by `doit keys` (openssl); every tool these tests need must be
installed (scripts/setup.sh installs them): a missing one fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pefile
import pytest

from tests.helpers.doit import dodo_ok, ran, run_stages
from tests.unit.test_pe import EPOCH, STUB, fake_bzimage
from tinyuki import secureboot
from tinyuki.config.context import make_context
from tinyuki.errors import TinyukiError
from tinyuki.formats import pe
from tinyuki.tasks import PIPELINE
from tinyuki.util import fs as fsutil

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("sbsign", "sbverify", "osslsigncode", "openssl", "faketime")


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    assert not missing, f"{', '.join(missing)} missing: scripts/setup.sh installs them"


def run(*cmd: str | Path) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    return proc.stdout + proc.stderr + f"\nexit {proc.returncode}"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need(*TOOLS)
    where = tmp_path_factory.mktemp("keys")
    assert secureboot.make_keys(where) == ["PK", "KEK", "db"]
    return where


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys that no firmware trusts."""
    where = tmp_path_factory.mktemp("other")
    secureboot.make_keys(where)
    return where


@pytest.fixture
def unsigned(tmp_path: Path) -> Path:
    path = tmp_path / "tinyuki.efi"
    path.write_bytes(pe.build_uki(STUB.read_bytes(), fake_bzimage(), cmdline="console=ttyS0 panic=-1",
                                  os_release_fields=[("ID", "tinyuki")], uname="6.1.192", timestamp=EPOCH))
    return path


def db(keys: Path, passphrase: str | None = None) -> secureboot.SignRequest:
    key, cert = secureboot.key_paths(keys, "db")
    return secureboot.SignRequest(key, cert, passphrase)


def test_signed_uki_is_accepted_by_sbverify_osslsigncode_and_pefile(keys: Path, unsigned: Path) -> None:
    out = unsigned.with_name("tinyuki.signed.efi")
    secureboot.sign_uki(unsigned, out, db(keys), epoch=EPOCH)
    cert = secureboot.key_paths(keys, "db")[1]
    text = run("sbverify", "--cert", cert, out)
    assert "Signature verification OK" in text and "exit 0" in text, text
    listing = run("sbverify", "--list", out)
    assert "gap" not in listing and "data remaining" not in listing and "signature 1" in listing, listing
    text = run("osslsigncode", "verify", "-CAfile", cert, "-in", out)
    assert "Signature verification: ok" in text and "MISMATCH" not in text and "exit 0" in text, text
    # the sections read back as they were; the signature follows the last section
    signed, plain = pefile.PE(str(out)), pefile.PE(str(unsigned))
    assert [s.Name for s in signed.sections] == [s.Name for s in plain.sections]
    assert pe.read_sections(out.read_bytes()) == pe.read_sections(unsigned.read_bytes())
    security = signed.OPTIONAL_HEADER.DATA_DIRECTORY[pe.SECURITY_DIRECTORY]
    assert security.VirtualAddress == unsigned.stat().st_size and security.Size > 0
    assert signed.verify_checksum()
    assert pe.layout_problems(out.read_bytes(), aligned_from=len(signed.sections)) == []
    # another db's certificate does not verify it
    wrong = run("sbverify", "--cert", secureboot.key_paths(keys, "KEK")[1], out)
    assert "exit 0" not in wrong


def test_osslsigncode_and_sbsign_hash_the_same_bytes(keys: Path, unsigned: Path, tmp_path: Path) -> None:
    """With no gap, a signer that hashes the file straight through agrees with sbsign's Authenticode hash."""
    key, cert = secureboot.key_paths(keys, "db")
    by_ossl = tmp_path / "ossl.efi"
    assert "exit 0" in run("osslsigncode", "sign", "-certs", cert, "-key", key, "-in", unsigned, "-out", by_ossl)
    text = run("sbverify", "--cert", cert, by_ossl)
    assert "Signature verification OK" in text, text
    by_sbsign = tmp_path / "sbsign.efi"
    secureboot.sign_uki(unsigned, by_sbsign, db(keys), epoch=EPOCH)

    def digest(path: Path) -> str:
        out = run("osslsigncode", "verify", "-CAfile", cert, "-in", path)
        current = next(ln for ln in out.splitlines() if "Current message digest" in ln).split(":")[1].strip()
        calculated = next(ln for ln in out.splitlines() if "Calculated message digest" in ln).split(":")[1].strip()
        assert current == calculated, out
        return current

    assert digest(by_ossl) == digest(by_sbsign)


def test_signing_is_reproducible_and_why(keys: Path, unsigned: Path, tmp_path: Path) -> None:
    """Same UKI, same key: same signed bytes, because the signingTime is the epoch; plain sbsign differs."""
    a, b = tmp_path / "a.efi", tmp_path / "b.efi"
    secureboot.sign_uki(unsigned, a, db(keys), epoch=EPOCH)
    time.sleep(1.1)
    secureboot.sign_uki(unsigned, b, db(keys), epoch=EPOCH)
    assert a.read_bytes() == b.read_bytes()
    later = tmp_path / "later.efi"
    secureboot.sign_uki(unsigned, later, db(keys), epoch=EPOCH + 1)
    assert later.read_bytes() != a.read_bytes()
    # what differs without the stopped clock: the signingTime attribute, so the RSA signature and the checksum
    key, cert = secureboot.key_paths(keys, "db")
    plain = []
    for name in ("p1.efi", "p2.efi"):
        subprocess.run(["sbsign", "--key", key, "--cert", cert, "--output", tmp_path / name, unsigned], check=True,
                       capture_output=True)
        plain.append((tmp_path / name).read_bytes())
        time.sleep(1.1)
    assert plain[0] != plain[1]
    assert plain[0][:unsigned.stat().st_size][:0x200] != plain[1][:unsigned.stat().st_size][:0x200]  # checksum
    times = [signing_time(p, tmp_path) for p in plain]
    assert times[0] != times[1]
    assert signing_time(a.read_bytes(), tmp_path) == "Nov 14 22:13:20 2023 GMT"


def signing_time(image: bytes, tmp: Path) -> str:
    parsed = pefile.PE(data=image, fast_load=True)
    security = parsed.OPTIONAL_HEADER.DATA_DIRECTORY[pe.SECURITY_DIRECTORY]
    der = tmp / "sig.p7"
    der.write_bytes(image[security.VirtualAddress + 8:security.VirtualAddress + security.Size])
    text = run("openssl", "pkcs7", "-inform", "der", "-in", der, "-print")
    lines = text.splitlines()
    at = next(i for i, ln in enumerate(lines) if "signingTime" in ln)
    return lines[at + 2].split("UTCTIME:")[1].strip()


def leftovers(where: Path) -> list[str]:
    return sorted(p.name for p in where.iterdir() if p.name.startswith("."))


def test_a_missing_key_is_a_clear_error(keys: Path, unsigned: Path) -> None:
    out = unsigned.with_name("signed.efi")
    req = secureboot.SignRequest(keys / "nope.key", secureboot.key_paths(keys, "db")[1])
    with pytest.raises(TinyukiError, match=r"signing key .*nope.key does not exist") as e:
        secureboot.sign_uki(unsigned, out, req, epoch=EPOCH)
    assert "doit keys" in e.value.render()
    assert not out.exists() and leftovers(out.parent) == []


def test_a_certificate_of_another_key_is_a_clear_error(keys: Path, other: Path, unsigned: Path) -> None:
    out = unsigned.with_name("signed.efi")
    req = secureboot.SignRequest(secureboot.key_paths(keys, "db")[0], secureboot.key_paths(other, "db")[1])
    with pytest.raises(TinyukiError, match="does not match the key"):
        secureboot.sign_uki(unsigned, out, req, epoch=EPOCH)
    assert not out.exists() and leftovers(out.parent) == []


def test_an_encrypted_key_needs_a_passphrase_source(keys: Path, unsigned: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    key, cert = secureboot.key_paths(keys, "db")
    locked = tmp_path / "locked.key"
    subprocess.run(["openssl", "pkey", "-in", key, "-aes256", "-passout", "pass:correct horse", "-out", locked],
                   check=True, capture_output=True)
    assert secureboot.is_encrypted(locked.read_bytes())
    out = tmp_path / "signed.efi"
    with pytest.raises(TinyukiError, match="is encrypted and \\[sign\\] has no passphrase source"):
        secureboot.sign_uki(unsigned, out, secureboot.SignRequest(locked, cert), epoch=EPOCH)
    assert not out.exists()
    with pytest.raises(TinyukiError, match="TINYUKI_TEST_PASS is not set"):
        secureboot.sign_uki(unsigned, out, secureboot.SignRequest(locked, cert, "env:TINYUKI_TEST_PASS"), epoch=EPOCH)
    monkeypatch.setenv("TINYUKI_TEST_PASS", "wrong")
    with pytest.raises(TinyukiError, match="decrypting the signing key"):
        secureboot.sign_uki(unsigned, out, secureboot.SignRequest(locked, cert, "env:TINYUKI_TEST_PASS"), epoch=EPOCH)
    assert not out.exists() and leftovers(tmp_path) == []
    monkeypatch.setenv("TINYUKI_TEST_PASS", "correct horse")
    secureboot.sign_uki(unsigned, out, secureboot.SignRequest(locked, cert, "env:TINYUKI_TEST_PASS"), epoch=EPOCH)
    plain = tmp_path / "plain.efi"
    secureboot.sign_uki(unsigned, plain, db(keys), epoch=EPOCH)
    assert out.read_bytes() == plain.read_bytes()  # the same key, decrypted: the same signature
    with pytest.raises(TinyukiError, match=f"does not match the key {locked}"):  # named as the user gave it
        secureboot.sign_uki(unsigned, tmp_path / "x.efi", secureboot.SignRequest(
            locked, secureboot.key_paths(keys, "KEK")[1], "env:TINYUKI_TEST_PASS"), epoch=EPOCH)
    (tmp_path / "pass.txt").write_text("correct horse\n")
    by_file = tmp_path / "by-file.efi"
    secureboot.sign_uki(unsigned, by_file, secureboot.SignRequest(locked, cert, f"file:{tmp_path}/pass.txt"),
                        epoch=EPOCH)
    assert by_file.read_bytes() == plain.read_bytes()


def test_a_failed_signing_keeps_the_previous_output(keys: Path, other: Path, unsigned: Path) -> None:
    out = unsigned.with_name("signed.efi")
    secureboot.sign_uki(unsigned, out, db(keys), epoch=EPOCH)
    before = out.read_bytes()
    bad = secureboot.SignRequest(secureboot.key_paths(other, "db")[0], secureboot.key_paths(keys, "db")[1])
    with pytest.raises(TinyukiError):
        secureboot.sign_uki(unsigned, out, bad, epoch=EPOCH)
    assert out.read_bytes() == before


def test_expected_pcr11_from_systemd_measure_matches_the_replay(unsigned: Path) -> None:
    assert secureboot.SYSTEMD_MEASURE.is_file(), "systemd-measure missing: Debian 12's systemd ships it"
    got = secureboot.expected_pcr11(unsigned.read_bytes())
    sections = secureboot.measured_sections(unsigned.read_bytes())
    assert got["banks"]["sha256"] == secureboot.pcr11_replay(sections, "sha256")
    assert got["banks"]["sha1"] == secureboot.pcr11_replay(sections, "sha1")
    assert got["sections"] == [".linux", ".osrel", ".cmdline"] and got["pcr"] == 11


def test_doit_keys_makes_private_keys_and_an_enrolled_store_and_keeps_them(tmp_path: Path) -> None:
    need("openssl")
    where = tmp_path / "sb"
    args = [f"keys_dir={where}", f"build_dir={tmp_path / 'build'}", f"cache_dir={tmp_path / 'cache'}"]
    out = dodo_ok("keys", *args)
    assert "made PK, KEK, db" in out
    for name in secureboot.KEY_NAMES:
        key, cert = secureboot.key_paths(where, name)
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, name
        assert "PRIVATE KEY" in key.read_text() and "CERTIFICATE" in cert.read_text()
    before = {p.name: p.read_bytes() for p in where.iterdir() if p.suffix in (".key", ".crt")}
    out = dodo_ok("keys", *args)
    assert "kept the existing PK, KEK, db" in out
    assert {p.name: p.read_bytes() for p in where.iterdir() if p.suffix in (".key", ".crt")} == before
    store = where / secureboot.ENROLLED_VARS
    text = run(secureboot.virt_fw_vars(), "--input", store, "--print", "--verbose")
    assert re.search(r"name=SecureBootEnable .*\n\s+bool: ON", text), text
    for name in secureboot.KEY_NAMES:
        assert f"subject CN=tinyuki test {name}" in text
    # a lone certificate is not silently replaced by a new pair
    os.unlink(secureboot.key_paths(where, "KEK")[0])
    with pytest.raises(TinyukiError, match=r"only one of KEK\.key and KEK\.crt"):
        secureboot.make_keys(where)


def test_one_changed_byte_breaks_the_signature_except_where_authenticode_does_not_look(
        keys: Path, unsigned: Path, tmp_path: Path) -> None:
    """Flip one byte at 48 places spread over the signed file and in every section: sbverify refuses each,
    except in the CheckSum and the certificate table's padding, which Authenticode leaves out by design."""
    signed = tmp_path / "signed.efi"
    secureboot.sign_uki(unsigned, signed, db(keys), epoch=EPOCH)
    data = signed.read_bytes()
    cert = secureboot.key_paths(keys, "db")[1]
    excluded = pe.unauthenticated_bytes(data)
    assert excluded[0][2] == "CheckSum"
    parsed = pefile.PE(data=data, fast_load=True)
    spots = {len(data) * i // 48 for i in range(48)} | {s.PointerToRawData for s in parsed.sections}
    spots |= {start for start, _end, _what in excluded} | {len(data) - 1}
    accepted = []
    for at in sorted(spots):
        changed = bytearray(data)
        changed[at] ^= 0x20
        probe = tmp_path / "probe.efi"
        probe.write_bytes(changed)
        if subprocess.run(["sbverify", "--cert", cert, probe], capture_output=True).returncode == 0:
            accepted.append(at)
    assert accepted and all(any(s <= at < e for s, e, _w in excluded) for at in accepted), accepted
    assert sum(e - s for s, e, _w in excluded) < 16


def test_a_key_on_a_pkcs11_token_signs_the_same_bytes(keys: Path, other: Path, unsigned: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The db key imported into a SoftHSM token and named by a PKCS#11 URI: sbsign's pkcs11 engine signs."""
    need("softhsm2-util", "pkcs11-tool")
    module = Path("/usr/lib/softhsm/libsofthsm2.so")
    engine = Path("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so")
    assert module.is_file() and engine.is_file(), "scripts/setup.sh installs softhsm2 and libengine-pkcs11-openssl"
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    monkeypatch.setenv("PKCS11_MODULE_PATH", str(module))
    key, cert = secureboot.key_paths(keys, "db")
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "tinyuki", "--pin", "1234",
                    "--so-pin", "5678"], check=True, capture_output=True)
    der = tmp_path / "db.p8"
    subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", key, "-outform", "der", "-out", der],
                   check=True, capture_output=True)
    subprocess.run(["pkcs11-tool", "--module", module, "--token-label", "tinyuki", "--login", "--pin", "1234",
                    "--write-object", der, "--type", "privkey", "--id", "01", "--label", "db"],
                   check=True, capture_output=True)
    uri = "pkcs11:token=tinyuki;object=db;type=private;pin-value=1234"
    by_token, by_file = tmp_path / "token.efi", tmp_path / "file.efi"
    secureboot.sign_uki(unsigned, by_token, secureboot.SignRequest(uri, cert), epoch=EPOCH)
    secureboot.sign_uki(unsigned, by_file, db(keys), epoch=EPOCH)
    assert by_token.read_bytes() == by_file.read_bytes()
    # the token's key with another key's certificate: sbsign refuses, tinyuki says why, nothing is written
    wrong = tmp_path / "wrong.efi"
    with pytest.raises(TinyukiError, match="does not match the key pkcs11:"):
        secureboot.sign_uki(unsigned, wrong, secureboot.SignRequest(uri, secureboot.key_paths(other, "db")[1]),
                            epoch=EPOCH)
    assert not wrong.exists() and leftovers(tmp_path) == []


def test_the_default_keys_dir_is_git_ignored() -> None:
    need("git")
    probe = ROOT / secureboot.KEYS_DIR / "db.key"
    proc = subprocess.run(["git", "-C", ROOT, "check-ignore", "-q", probe], capture_output=True)
    assert proc.returncode == 0, f"{probe} is not ignored by git"


def test_the_sign_stage_as_a_doit_task(keys: Path, other: Path, tmp_path: Path, unsigned: Path) -> None:
    """The stage signs the build's UKI; with a mismatched certificate it fails cleanly and leaves no output."""
    def ctx_for(cert: Path) -> object:
        prof = tmp_path / "sign.toml"
        prof.write_text('[source]\nurls = ["/x/linux.tar.xz"]\nsha256 = "' + "a" * 64 + '"\n'
                        '[kernel]\nfragments = ["base"]\n'
                        f'[uki]\nstub = "{STUB}"\n'
                        f'[sign]\nkey = "{secureboot.key_paths(keys, "db")[0]}"\ncert = "{cert}"\n')
        return make_context(str(prof), str(tmp_path / "build"), str(tmp_path / "cache"), "1", root=ROOT)

    ctx = ctx_for(secureboot.key_paths(keys, "db")[1])
    uki = ctx.paths.build / "tinyuki.efi"  # type: ignore[attr-defined]
    uki.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(unsigned, uki)
    code, _ = run_stages(ctx, ["sign"], ["sign"])  # type: ignore[arg-type]
    signed = ctx.paths.build / "tinyuki.signed.efi"  # type: ignore[attr-defined]
    assert code == 0 and signed.is_file()
    assert "Signature verification OK" in run("sbverify", "--cert", secureboot.key_paths(keys, "db")[1], signed)
    assert fsutil.sha256_file(uki) == fsutil.sha256_file(unsigned)  # the unsigned UKI stays as it was
    signed.unlink()
    bad = ctx_for(secureboot.key_paths(other, "db")[1])
    code, _ = run_stages(bad, ["sign"], ["sign"])  # type: ignore[arg-type]
    assert code != 0 and not signed.exists()


def test_the_pipeline_with_and_without_sign(keys: Path, tmp_path: Path) -> None:
    """The fake kernel's whole pipeline: [sign] adds the signed UKI (only sign, disk and manifest rerun);
    removing [sign] removes it again and the manifest stops listing it; a no-change run signs nothing."""
    from tests.wiring.test_pipeline_wiring import doit as pipeline_doit
    from tests.wiring.test_pipeline_wiring import project as make_project

    project = make_project.__wrapped__(tmp_path)  # type: ignore[attr-defined]
    plain = project["profile"].read_text()
    pipeline_doit(project)
    unsigned = fsutil.sha256_file(project["build"] / "tinyuki.efi")
    key, cert = secureboot.key_paths(keys, "db")
    project["profile"].write_text(plain + f'\n[sign]\nkey = "{key}"\ncert = "{cert}"\n')
    out = pipeline_doit(project)
    # the stick image carries the signed UKI once there is one (tasks/disk.py)
    assert [t for t in ran(out) if t in PIPELINE.names] == ["sign", "disk", "manifest"], out
    signed = project["build"] / "tinyuki.signed.efi"
    manifest = fsutil.read_json(project["build"] / "manifest.json")
    assert manifest["artifacts"]["uki-signed"]["sha256"] == fsutil.sha256_file(signed)
    assert manifest["signing"]["certificate"]["subject"].endswith("tinyuki test db")
    assert fsutil.sha256_file(project["build"] / "tinyuki.efi") == unsigned
    assert "Signature verification OK" in run("sbverify", "--cert", cert, signed)
    out = pipeline_doit(project)
    assert [t for t in ran(out) if t in PIPELINE.names] == [], out
    project["profile"].write_text(plain)
    out = pipeline_doit(project)
    assert not signed.exists(), out
    assert "uki-signed" not in fsutil.read_json(project["build"] / "manifest.json")["artifacts"]
