"""OpenPGP keys made for tests: trusted, untrusted, expired and revoked signers.

Keys are ed25519 without passphrase (fast to make); the expired one is made
and used in the past with gpg's --faked-system-time, the revoked one gets the
revocation certificate gpg writes at creation time imported.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import gnupg


@dataclass(frozen=True)
class TestKey:
    name: str
    fingerprint: str
    public: Path  # armored public key file, as a profile's keyrings lists
    home: Path

    def sign(self, data: bytes, out: Path, past: bool = False) -> Path:
        """Write a detached armored signature of `data` to `out`."""
        sig = _gpg(self.home, past).sign(data, keyid=self.fingerprint, detach=True, binary=False)
        if not sig.data:
            raise RuntimeError(f"signing with {self.name} failed: {sig.stderr}")
        out.write_bytes(sig.data)
        return out

    def clearsign(self, text: bytes) -> bytes:
        sig = _gpg(self.home, False).sign(text, keyid=self.fingerprint, clearsign=True)
        if not sig.data:
            raise RuntimeError(f"clearsigning with {self.name} failed: {sig.stderr}")
        return sig.data


PAST = "20200101T000000!"


def _gpg(home: Path, past: bool) -> gnupg.GPG:
    opts = ["--faked-system-time", PAST] if past else []
    return gnupg.GPG(gnupghome=str(home), options=opts)


def make_key(base: Path, name: str, expired: bool = False, revoked: bool = False) -> TestKey:
    home = base / f"home-{name}"
    home.mkdir(parents=True, mode=0o700)
    g = _gpg(home, expired)
    params = g.gen_key_input(key_type="EDDSA", key_curve="ed25519", key_usage="sign", name_real=f"tinyuki test {name}",
                             name_email=f"{name}@tinyuki.invalid", expire_date="1d" if expired else 0,
                             no_protection=True)
    key = g.gen_key(params)
    fpr = str(key.fingerprint)
    if not fpr:
        raise RuntimeError(f"key generation failed: {key.stderr}")
    tk = TestKey(name, fpr, base / f"{name}.asc", home)
    public = g.export_keys(fpr)
    if revoked:
        # the signing home keeps the key usable; the published key carries its revocation
        cert = (home / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
        cert = cert.replace(":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----")
        pub_home = base / f"home-{name}-published"
        pub_home.mkdir(mode=0o700)
        pg = _gpg(pub_home, False)
        pg.import_keys(public)
        pg.import_keys(cert)
        public = pg.export_keys(fpr)
    tk.public.write_text(public)
    return tk


def stop_agents(base: Path) -> None:
    """Key generation starts a gpg-agent per home; stop them so no process outlives the tests."""
    if shutil.which("gpgconf") is None:
        return
    for home in base.glob("home-*"):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
