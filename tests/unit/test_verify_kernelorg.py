"""The real kernel.org material: the autosigner's sha256sums.asc and the pinned keys."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT
from tinyuki.config.profile import load_profile
from tinyuki.errors import TinyukiError
from tinyuki.source import gpg, trust

SUMS = DATA / "kernel.org-v4.x-sha256sums.asc"
AUTOSIGNER = "B8868C80BA62A1FFFAF5FDA9632D3A06589DA6B1"
KEY = ROOT / "configs" / "keys" / "autosigner.asc"


def test_real_sha256sums_is_verified_and_read():
    listed, signer = trust.check_sha256sums(SUMS, "linux-4.9.7.tar.xz", (KEY,), (AUTOSIGNER,))
    assert signer == AUTOSIGNER
    assert listed == "0b61283b71c7397cb6b5ac3497845d3cdf8137ecd16ab39c8ac6cf5bb90e33dc"
    listed, _ = trust.check_sha256sums(SUMS, "linux-4.0.tar.xz", (KEY,), (AUTOSIGNER,))
    assert listed == "0f2f7d44979bc8f71c4fc5d3308c03499c26a824dd311fdf6eef4dee0d7d5991"


def tampered(tmp_path: Path, old: str, new: str) -> Path:
    text = SUMS.read_text()
    assert old in text
    out = tmp_path / "sha256sums.asc"
    out.write_text(text.replace(old, new, 1))
    return out


def test_tampered_hash_is_a_bad_signature(tmp_path):
    f = tampered(tmp_path, "0b61283b71c7397cb6b5ac3497845d3cdf8137ecd16ab39c8ac6cf5bb90e33dc",
                 "1b61283b71c7397cb6b5ac3497845d3cdf8137ecd16ab39c8ac6cf5bb90e33dc")
    with pytest.raises(TinyukiError) as e:
        trust.check_sha256sums(f, "linux-4.9.7.tar.xz", (KEY,), (AUTOSIGNER,))
    assert "BAD signature" in e.value.message


def test_text_added_outside_the_signed_part_is_ignored(tmp_path):
    """Lines before the armor are not signed: they must not be able to list a file."""
    f = tmp_path / "sha256sums.asc"
    f.write_text(f"{'e' * 64}  linux-evil.tar.xz\n" + SUMS.read_text())
    with pytest.raises(TinyukiError) as e:
        trust.check_sha256sums(f, "linux-evil.tar.xz", (KEY,), (AUTOSIGNER,))
    assert "not listed in the signed part" in e.value.message


def test_damaged_signature_block(tmp_path):
    f = tampered(tmp_path, "iQIcBAEBCAAGBQJYkdwDAAoJEGMtOgZYnaax", "iQIcBAEBCAAGBQJYkdwDAAoJEGMtOgZYnaaX")
    with pytest.raises(TinyukiError) as e:
        trust.check_sha256sums(f, "linux-4.9.7.tar.xz", (KEY,), (AUTOSIGNER,))
    assert "signature" in e.value.message.lower()


def test_right_signature_but_signer_not_trusted():
    gregkh = "647F28654894E3BD457199BE38DBBDC86092693E"
    with pytest.raises(TinyukiError) as e:
        trust.check_sha256sums(SUMS, "linux-4.9.7.tar.xz", (KEY,), (gregkh,))
    assert f"good signature by {AUTOSIGNER}" in e.value.message and "not one of the trusted" in e.value.message


def test_without_the_key_the_signer_is_unknown(tmp_path):
    other = ROOT / "configs" / "keys" / "torvalds.asc"
    with pytest.raises(TinyukiError) as e:
        trust.check_sha256sums(SUMS, "linux-4.9.7.tar.xz", (other,), (AUTOSIGNER,))
    assert "not in the profile's keyrings" in e.value.message


def test_kernel_org_profile_fingerprints_match_its_key_files():
    prof = load_profile("kernel.org", ROOT).source
    assert set(prof.signers) <= {f for k in prof.keyrings for f in gpg.fingerprints(k)}
    assert set(prof.sha256sums_signers) <= {f for k in prof.sha256sums_keyrings for f in gpg.fingerprints(k)}
    assert prof.signers == ("647F28654894E3BD457199BE38DBBDC86092693E",)
    assert gpg.fingerprints(KEY) == [AUTOSIGNER]


# ---------------------------------------------------------------- the policy on gpg's status lines

GOOD = """[GNUPG:] NEWSIG
[GNUPG:] KEY_CONSIDERED AAAA 0
[GNUPG:] GOODSIG 1111222233334444 Some One <a@b>
[GNUPG:] VALIDSIG SUBKEYFPR 2024-01-01 1700000000 0 4 0 22 10 00 PRIMARYFPR
[GNUPG:] TRUST_UNDEFINED 0 pgp
"""


def test_policy_accepts_primary_fingerprint_only():
    assert gpg.evaluate(GOOD, ["PRIMARYFPR"], "x").ok
    assert gpg.evaluate(GOOD, ["primaryfpr"], "x").signer == "PRIMARYFPR"
    assert not gpg.evaluate(GOOD, ["SUBKEYFPR"], "x").ok


def test_policy_rejects_any_bad_signature_even_beside_a_good_one():
    text = GOOD + "[GNUPG:] NEWSIG\n[GNUPG:] BADSIG 5555 Mallory\n"
    v = gpg.evaluate(text, ["PRIMARYFPR"], "x")
    assert not v.ok and "BAD signature" in v.message


def test_policy_expired_key_even_with_validsig():
    text = GOOD.replace("GOODSIG", "EXPKEYSIG").replace("[GNUPG:] NEWSIG\n", "[GNUPG:] NEWSIG\n[GNUPG:] KEYEXPIRED 1\n")
    v = gpg.evaluate(text, ["PRIMARYFPR"], "x")
    assert not v.ok and "EXPIRED" in v.message


def test_policy_no_signature():
    v = gpg.evaluate("[GNUPG:] NODATA 1\n", ["X"], "sig")
    assert not v.ok and "no OpenPGP signature found" in v.message


def test_dpkg_check_on_a_real_package():
    patch_bin = Path(shutil.which("patch") or "/usr/bin/patch").resolve()
    assert trust.dpkg_check(patch_bin, "patch")
    with pytest.raises(TinyukiError) as e:
        trust.dpkg_check(patch_bin, "linux-source-6.1")
    assert "belongs to patch, not to linux-source-6.1" in e.value.message


def test_dpkg_check_unowned_file(tmp_path):
    f = tmp_path / "x.tar.xz"
    f.write_bytes(b"x")
    with pytest.raises(TinyukiError) as e:
        trust.dpkg_check(f, "linux-source-6.1")
    assert "does not belong to any installed Debian package" in e.value.message


def test_dpkg_verify_output_is_read_per_file():
    out = "??5??????   /usr/src/linux-source-6.1.tar.xz\n??5?????? c /etc/x.conf\n"
    assert trust.modified_files(out, Path("/usr/src/linux-source-6.1.tar.xz")).startswith("??5")
    assert trust.modified_files(out, Path("/usr/src/other.tar.xz")) is None
