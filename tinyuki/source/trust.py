"""Trust in a kernel tarball: OpenPGP signatures, signed checksum lists, dpkg, trust on first use.

kernel.org signs the *uncompressed* tar, so the tarball is decompressed on the
fly into gpg and never written out. Debian's source package is trusted through
dpkg's own record of the file (apt checked the package's signature). A source
without a pinned hash is recorded on first use in cache/locks/ and must keep
that hash; `doit pin` shows and, on request, accepts a new one.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import time
from pathlib import Path
from typing import IO, Any

from tinyuki.errors import TinyukiError, die
from tinyuki.formats.safetar import compression
from tinyuki.source import download, gpg
from tinyuki.util.fs import atomic_write_json, read_json
from tinyuki.util.runner import run

# ---------------------------------------------------------------- trust on first use


def lock_path(locks: Path, url: str) -> Path:
    """One record per source (its first url), shared by every profile and build dir on this machine."""
    return locks / f"{download.basename(url)}-{download.url_key(url)}.json"


def read_lock(locks: Path, url: str) -> dict[str, Any] | None:
    path = lock_path(locks, url)
    try:
        rec = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise die(f"cannot read the trust record {path}: {e}",
                  "delete it and run `doit pin accept=1` to record the current source again") from e
    if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str):
        raise die(f"the trust record {path} is damaged",
                  "delete it and run `doit pin accept=1` to record the current source again")
    return rec


def write_lock(locks: Path, url: str, sha256: str, package: str | None, version: str | None) -> None:
    atomic_write_json(lock_path(locks, url), {
        "source": url,
        "sha256": sha256,
        "package": package,
        "package_version": version,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })


# ---------------------------------------------------------------- the checks


def dpkg_check(path: Path, package: str) -> str:
    """The file must belong to `package` and be unmodified; return the package's version.

    apt verified the package's signature when it was installed and dpkg kept
    each file's checksum, so this extends apt's trust to the tarball.
    """
    hint = f"install or reinstall it: apt-get install --reinstall {package}"
    try:
        owner = run(["dpkg", "-S", str(path)], quiet=False, what="dpkg -S").stdout.decode().strip()
    except TinyukiError as e:
        raise die(f"{path} does not belong to any installed Debian package (dpkg -S found nothing)", hint) from e
    owners = {o.split(":")[0].strip() for o in owner.split(": ", 1)[0].split(",")}
    if package not in owners:
        raise die(f"{path} belongs to {', '.join(sorted(owners))}, not to {package}",
                  "fix [source] package in the profile, or the path")
    try:
        out = run(["dpkg", "--verify", package], what="dpkg --verify").stdout.decode(errors="replace")
    except TinyukiError as e:
        out = e.message
    bad = modified_files(out, path)
    if bad:
        raise die(f"dpkg --verify says {path} differs from what package {package} installed:\n    {bad}", hint)
    return run(["dpkg-query", "-W", "-f=${Version}", package], quiet=True).stdout.decode().strip()


def modified_files(dpkg_verify_output: str, path: Path) -> str | None:
    """dpkg --verify prints one line per changed file, e.g. `??5??????   /usr/src/x.tar.xz`."""
    for line in dpkg_verify_output.splitlines():
        if line.rstrip().endswith(" " + str(path)):
            return line.strip()
    return None


class _Decompressed(io.RawIOBase):
    """The uncompressed stream, remembering a decompression error instead of raising it.

    python-gnupg reads the stream in a thread and would only log the error;
    remembering it lets the verdict say "corrupt archive" instead of "bad signature".
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.error: Exception | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.error is not None:
            return 0
        try:
            data = self._raw.read(len(b))
        except (OSError, EOFError, lzma.LZMAError, ValueError) as e:
            self.error = e
            return 0
        b[: len(data)] = data
        return len(data)


def check_signature(tarball: Path, signature: Path, keyrings: tuple[Path, ...], signers: tuple[str, ...],
                    over: str) -> tuple[gpg.Verdict, str]:
    """Check the detached signature in one read of the tarball; return the verdict and the tarball's sha256."""
    with gpg.keyring(keyrings) as ring, open(tarball, "rb") as raw:
        hashed = gpg.HashingReader(raw)
        buffered = io.BufferedReader(hashed, 1 << 20)
        stream: IO[bytes] = buffered
        guard = None
        if over == "uncompressed":
            kind = compression(tarball)
            opener = {"xz": lzma.open, "gzip": gzip.open, "bzip2": bz2.open}.get(kind or "")
            if opener is not None:
                guard = _Decompressed(opener(buffered, "rb"))
                stream = io.BufferedReader(guard, 1 << 20)
        verdict = ring.verify_detached(signature, stream, signers, f"signature {signature.name}")
        hashed.drain()
    if guard is not None and guard.error is not None:
        verdict = gpg.Verdict(False, f"cannot decompress {tarball.name} to check its signature: {guard.error}")
    return verdict, hashed.sha256.hexdigest()


def check_sha256sums(sums: Path, filename: str, keyrings: tuple[Path, ...], signers: tuple[str, ...]) -> \
        tuple[str, str]:
    """Verify the clearsigned listing, and return (the sha256 it lists for filename, its signer)."""
    with gpg.keyring(keyrings) as ring:
        verdict, text = ring.verify_clearsigned(sums, signers, f"checksum list {sums.name}")
    if not verdict.ok:
        raise die(verdict.message, "the checksum list is not the one kernel.org's autosigner signed;"
                                   " check sha256sums and sha256sums_keyrings in the profile")
    listed = gpg.parse_sha256sums(text.decode(errors="replace"), filename)
    if listed is None:
        raise die(f"{filename} is not listed in the signed part of {sums.name}",
                  "the sha256sums url must be the listing of the directory the tarball comes from")
    assert verdict.signer is not None
    return listed, verdict.signer
