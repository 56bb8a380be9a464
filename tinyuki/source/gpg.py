"""OpenPGP checks: a private throw-away keyring, and a signature policy that reads gpg's status lines.

gpg's own notion of trust (the user's ~/.gnupg, its web of trust) has no place
in a build: the profile names the key files and the primary-key fingerprints it
accepts, and nothing else is consulted. gpg reports every signature as machine
readable `[GNUPG:]` status lines; `evaluate` turns those into accept/reject with
a message that says which of the many ways a signature can be wrong applies.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import gnupg

from tinyuki.errors import TinyukiError, die
from tinyuki.util.runner import run

# python-gnupg logs a traceback when gpg stops reading early (a garbled signature);
# the verdict already says what happened, so its log stays quiet.
logging.getLogger("gnupg").addHandler(logging.NullHandler())
logging.getLogger("gnupg").propagate = False

# ERRSIG's return codes that mean "we do not have the key", per gpg's doc/DETAILS
_RC_NO_PUBKEY = "9"


@dataclass
class _Sig:
    """What gpg said about one signature (between two NEWSIG lines)."""

    keyid: str | None = None
    outcome: str | None = None  # GOODSIG, BADSIG, EXPSIG, EXPKEYSIG, REVKEYSIG, ERRSIG
    uid: str = ""
    fingerprint: str | None = None  # the signing (sub)key
    primary: str | None = None  # the primary key's fingerprint, from VALIDSIG
    errsig_rc: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str
    signer: str | None = None  # primary-key fingerprint of the accepted signature


def parse_status(text: str) -> tuple[list[_Sig], set[str]]:
    """Group gpg's status lines by signature; also return the keywords seen outside any."""
    sigs: list[_Sig] = []
    seen: set[str] = set()
    cur: _Sig | None = None
    for line in text.splitlines():
        if not line.startswith("[GNUPG:] "):
            continue
        parts = line[9:].split(" ")
        key, args = parts[0], parts[1:]
        seen.add(key)
        if key == "NEWSIG":
            cur = _Sig()
            sigs.append(cur)
            continue
        if key in ("GOODSIG", "BADSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "ERRSIG"):
            if cur is None or cur.outcome is not None:
                cur = _Sig()
                sigs.append(cur)
            cur.outcome = key
            cur.keyid = args[0] if args else None
            cur.uid = " ".join(args[1:]) if key != "ERRSIG" else ""
            if key == "ERRSIG":
                cur.errsig_rc = args[5] if len(args) > 5 else None
                if len(args) > 6 and args[6] != "-":
                    cur.fingerprint = args[6]
        elif key == "VALIDSIG" and cur is not None and args:
            cur.fingerprint = args[0]
            cur.primary = args[9] if len(args) > 9 else args[0]
        elif key in ("KEYEXPIRED", "KEYREVOKED", "SIGEXPIRED") and cur is not None:
            cur.notes.append(key)
    return sigs, seen


def evaluate(status: str, trusted: Sequence[str], what: str) -> Verdict:
    """Accept only a good, unexpired, unrevoked signature whose primary key is in `trusted`.

    Any bad signature in the file rejects it, even next to a good one: a
    tampered file is never "mostly" signed.
    """
    trusted_set = {t.upper() for t in trusted}
    sigs, seen = parse_status(status)
    if not sigs:
        return Verdict(False, f"{what}: no OpenPGP signature found: the signature file is missing, empty or garbled"
                              f" (gpg status: {', '.join(sorted(seen)) or 'none'})")
    for s in sigs:
        if s.outcome == "BADSIG":
            return Verdict(False, f"{what}: BAD signature by key {s.keyid} {s.uid}: the data is not what was"
                                  " signed (altered file, or a signature made over different data)")
    for s in sigs:
        if s.outcome == "GOODSIG" and s.primary and s.primary.upper() in trusted_set:
            return Verdict(True, f"good signature by {s.primary} {s.uid}", signer=s.primary.upper())
    # no acceptable signature: explain the most telling reason
    for s in sigs:
        who = s.primary or s.fingerprint or s.keyid
        if s.outcome == "EXPKEYSIG":
            return Verdict(False, f"{what}: signature by key {who} {s.uid}, but that key has EXPIRED")
        if s.outcome == "REVKEYSIG":
            return Verdict(False, f"{what}: signature by key {who} {s.uid}, but that key has been REVOKED")
        if s.outcome == "EXPSIG":
            return Verdict(False, f"{what}: the signature by key {who} has expired")
    for s in sigs:
        if s.outcome == "GOODSIG":
            return Verdict(False, f"{what}: good signature by {s.primary or s.keyid} {s.uid}, but that key is not"
                                  f" one of the trusted signers ({', '.join(trusted) or 'none'})")
    for s in sigs:
        if s.outcome == "ERRSIG":
            if s.errsig_rc == _RC_NO_PUBKEY:
                return Verdict(False, f"{what}: signed by key {s.fingerprint or s.keyid}, which is not in the"
                                      " profile's keyrings (an unknown signer)")
            return Verdict(False, f"{what}: gpg could not check the signature by key {s.keyid}"
                                  f" (error code {s.errsig_rc})")
    return Verdict(False, f"{what}: no valid signature (gpg status: {', '.join(sorted(seen))})")


class HashingReader(io.RawIOBase):
    """A read-only stream that hashes what passes through, so a check and a hash share one read."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.sha256.update(data)
        self.size += n
        return n

    def drain(self) -> None:
        """Read to the end, so the hash covers the whole file even if the consumer stopped early."""
        while self.read(1 << 20):
            pass


class Keyring:
    """A temporary GNUPGHOME holding only the given public keys."""

    def __init__(self, home: Path) -> None:
        self.home = home
        try:
            self.gpg = gnupg.GPG(gnupghome=str(home))
        except (OSError, ValueError) as e:
            raise die(f"the OpenPGP check needs gpg, which cannot run here: {e}",
                      "install it: apt-get install gnupg (scripts/setup.sh does)") from e
        self.gpg.buffer_size = 1 << 20
        self.gpg.encoding = "utf-8"

    def import_file(self, path: Path) -> list[str]:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise die(f"cannot read key file {path}: {e.strerror}", "fix the keyrings paths in the profile") from e
        res = self.gpg.import_keys(data)
        fprs = [f for f in (res.fingerprints or []) if f]
        if not fprs:
            raise die(f"key file {path} holds no OpenPGP public key",
                      "export it with `gpg --armor --export FINGERPRINT > FILE` and list that file")
        return fprs

    def verify_detached(self, signature: Path, data: IO[bytes], trusted: Sequence[str], what: str) -> Verdict:
        """Check a detached signature over a stream fed to gpg's stdin (never written to disk)."""
        try:
            res = self.gpg.verify_file(data, close_file=False, extra_args=[str(signature), "-"])
        except BrokenPipeError:
            # gpg stopped reading the data before its end: it gave up on the signature
            # file itself. Never an acceptance; ask gpg about the signature alone for the reason.
            alone = self.gpg.verify_file(io.BytesIO(b""), extra_args=[str(signature), "-"])
            verdict = evaluate(alone.stderr or "", trusted, what)
            reason = verdict.message if not verdict.ok else f"{what}: gpg stopped reading the data"
            return Verdict(False, reason)
        return evaluate(res.stderr or "", trusted, what)

    def verify_clearsigned(self, path: Path, trusted: Sequence[str], what: str) -> tuple[Verdict, bytes]:
        """Check a clearsigned file; return the text that the signature covers, and only that."""
        with open(path, "rb") as f:
            res = self.gpg.decrypt_file(f)
        return evaluate(res.stderr or "", trusted, what), bytes(res.data or b"")


def stop_agents(home: Path) -> None:
    """Stop the daemons gpg started for `home` (gpg-agent, keyboxd, dirmngr).

    gpg launches a gpg-agent for a fresh home on its first import, and that
    agent outlives gpg: without this, every verify would leave a daemon behind
    whose home directory is already gone. gpgconf is part of gnupg, so it is
    there whenever gpg is; if it is not, there is nothing it could stop.
    """
    try:
        run(["gpgconf", "--homedir", str(home), "--kill", "all"], quiet=True, what="stopping gpg-agent",
            timeout=30)
    except TinyukiError:
        pass  # no gpgconf, or no agent: nothing to stop, and never a reason to fail the check


@contextmanager
def keyring(key_files: Sequence[Path]) -> Iterator[Keyring]:
    """A private keyring for one check; deleted afterwards, its agent stopped, the user's ~/.gnupg untouched."""
    with tempfile.TemporaryDirectory(prefix="tinyuki-gpg-") as home:
        try:
            ring = Keyring(Path(home))
            for kf in key_files:
                ring.import_file(kf)
            yield ring
        finally:
            stop_agents(Path(home))


def fingerprints(key_file: Path) -> list[str]:
    """Primary-key fingerprints in an armored key file (what a profile's `signers` lists)."""
    with keyring([]) as ring:
        return [k["fingerprint"] for k in ring.gpg.scan_keys(str(key_file))]


def parse_sha256sums(text: str, filename: str) -> str | None:
    """The sha256 listed for `filename` in a sha256sum-format listing (what kernel.org signs).

    A listing that names the file twice with different hashes vouches for
    neither: which line a tool reads first must never decide what is trusted.
    """
    found: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == filename and len(parts[0]) == 64:
            found.append(parts[0].lower())
    if len(set(found)) > 1:
        raise die(f"the signed checksum list names {filename} twice with different hashes: {', '.join(found)}",
                  "the list is malformed or tampered with; do not use this tarball, and fetch the list again")
    return found[0] if found else None
