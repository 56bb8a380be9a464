"""verify: decide whether the fetched tarball is the one the profile trusts, then store it by content.

Every anchor the profile names must hold: the pinned sha256, the OpenPGP
signature (kernel.org signs the *uncompressed* tar, so the tarball is
decompressed on the fly into gpg and never written out), the clearsigned
sha256sums.asc, and for Debian's source package dpkg's own record of the file.
A source without a pinned hash is recorded on first use in cache/locks/ and
must keep that hash; `doit pin` shows and, on request, accepts a new one.
Only a tarball that passed lands in the store (cache/sha256/); a rejected
download is deleted so the next fetch starts afresh.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import time
from pathlib import Path
from typing import IO, Any

from doit import get_var
from doit.tools import config_changed

from tasks import download, gpg, variables
from tasks.context import Context
from tasks.errors import TinyukiError, action, die
from tasks.fsutil import atomic_copy, atomic_write_json, fsync_dir, read_json, sha256_file
from tasks.runner import run
from tasks.safetar import compression

# ---------------------------------------------------------------- trust on first use


def lock_path(ctx: Context) -> Path:
    """One record per source (its first url), shared by every profile and build dir on this machine."""
    url = ctx.profile.source.urls[0]
    return ctx.paths.locks / f"{download.basename(url)}-{download.url_key(url)}.json"


def read_lock(ctx: Context) -> dict[str, Any] | None:
    try:
        rec = read_json(lock_path(ctx))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise die(f"cannot read the trust record {lock_path(ctx)}: {e}",
                  "delete it and run `doit pin accept=1` to record the current source again") from e
    if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str):
        raise die(f"the trust record {lock_path(ctx)} is damaged",
                  "delete it and run `doit pin accept=1` to record the current source again")
    return rec


def write_lock(ctx: Context, sha256: str, package: str | None, version: str | None) -> None:
    atomic_write_json(lock_path(ctx), {
        "source": ctx.profile.source.urls[0],
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


# ---------------------------------------------------------------- the stage


def _verify(ctx: Context) -> None:
    src = ctx.profile.source
    got = read_json(ctx.paths.fetched)
    sha: str = got["sha256"]
    stored = ctx.paths.stored(sha)
    path = Path(got["path"])
    if not path.is_file():
        if not stored.is_file():
            raise die(f"the fetched tarball {path} is gone", "run `doit fetch` again")
        path = stored
    filename = download.basename(got["url"])
    downloaded = path.is_relative_to(ctx.paths.incoming)

    def reject(message: str, hint: str) -> TinyukiError:
        if downloaded:
            download.discard(path)  # never keep a rejected download where it could be reused
        return die(message, hint)

    if not src.signature:
        # The signature check hashes the file as it reads it; without one, hash it here:
        # a file already in the store (or a local path) is never trusted by its name alone.
        actual = sha256_file(path)
        if actual != sha:
            if path == stored:
                download.discard(stored)
            raise reject(f"{path} does not hold the bytes it was fetched as:\n    expected {sha}\n"
                         f"    got      {actual}", "it was damaged or replaced; run `doit fetch verify` again")
    trust: list[str] = []
    if src.sha256:
        if sha != src.sha256:
            raise reject(f"sha256 mismatch for {filename} from {got['url']}:\n    expected {src.sha256}\n"
                         f"    got      {sha}",
                         "the download is damaged or not the release the profile pins; if the profile's url was"
                         " changed on purpose, `doit pin` prints the new hash to paste")
        trust.append("sha256 pin")
    if src.signature:
        if not got.get("signature"):
            raise die(f"no signature file was fetched for {filename}", "run `doit fetch` again")
        verdict, seen = check_signature(path, Path(got["signature"]), src.keyrings, src.signers,
                                        src.signature_over)
        if not verdict.ok:
            raise reject(verdict.message,
                         "do not use this tarball; check the signature url, signature_over (kernel.org signs the"
                         " uncompressed tar), keyrings and signers in the profile")
        if seen != sha:
            raise reject(f"{path} changed while it was being verified", "run `doit fetch verify` again")
        trust.append(f"signature by {verdict.signer}")
    if src.sha256sums:
        if not got.get("sha256sums"):
            raise die(f"no sha256sums file was fetched for {filename}", "run `doit fetch` again")
        listed, signer = check_sha256sums(Path(got["sha256sums"]), filename, src.sha256sums_keyrings,
                                          src.sha256sums_signers)
        if listed != sha:
            raise reject(f"sha256 of {filename} is {sha}, but the signed sha256sums.asc lists {listed}",
                         "the download is damaged or was replaced; fetch it from another mirror")
        trust.append(f"sha256sums.asc by {signer}")
    version = None
    if src.package:
        version = dpkg_check(path, src.package)
        trust.append(f"dpkg {src.package} {version}")
    if not src.sha256:
        lock = read_lock(ctx)
        if lock is None:
            write_lock(ctx, sha, src.package, version)
            print(f"verify: recorded {filename} sha256 {sha} on first use in {lock_path(ctx)}")
        elif lock["sha256"] != sha:
            raise die(
                f"{filename} changed since it was first used:\n    recorded {lock['sha256']}"
                f" ({lock.get('package') or ''} {lock.get('package_version') or ''}, {lock.get('recorded')})\n"
                f"    now      {sha} ({src.package or ''} {version or ''})",
                f"if you expected this (e.g. a Debian security update), accept it with"
                f" `doit profile={ctx.profile.path} pin accept=1`; otherwise find out who changed it")
        trust.append("recorded on first use")
    _store(path, sha, stored, downloaded)
    atomic_write_json(ctx.paths.source, {
        "sha256": sha, "path": str(stored), "filename": filename, "trust": trust,
        "package": src.package, "package_version": version,
    })
    print(f"verify: {filename} is trusted ({'; '.join(trust)}) -> {stored}")


def _store(path: Path, sha: str, stored: Path, downloaded: bool) -> None:
    """Move (download) or copy (local file) into the store; a copy is re-hashed as it is written."""
    if path == stored or stored.is_file():
        if downloaded and path != stored:
            download.discard(path)
        return
    stored.parent.mkdir(parents=True, exist_ok=True)
    if downloaded:
        os.chmod(path, 0o444)
        os.replace(path, stored)
        fsync_dir(stored.parent)
        return
    copied = atomic_copy(path, stored, 0o444)
    if copied != sha:
        download.discard(stored)
        raise die(f"{path} changed while it was being verified (now sha256 {copied})", "run `doit verify` again")


def _output_good(ctx: Context) -> bool:
    try:
        rec = read_json(ctx.paths.source)
        if not ctx.paths.stored(rec["sha256"]).is_file():
            return False
        if not ctx.profile.source.sha256:
            lock = read_lock(ctx)
            return lock is not None and lock["sha256"] == rec["sha256"]
        return True
    except (OSError, ValueError, KeyError, TypeError, TinyukiError):
        return False


def trust_settings(ctx: Context) -> dict[str, Any]:
    return ctx.profile.settings("source")


def task(ctx: Context) -> dict[str, Any]:
    src = ctx.profile.source
    keys = sorted({str(p) for p in (*src.keyrings, *src.sha256sums_keyrings)})
    return {
        "actions": [(action(_verify), [ctx])],
        "file_dep": [str(ctx.paths.fetched), *keys],
        "targets": [str(ctx.paths.source)],
        "uptodate": [config_changed(trust_settings(ctx)), lambda: _output_good(ctx)],
        "verbosity": 2,
    }


# ---------------------------------------------------------------- doit pin


def _pin(ctx: Context, accept: bool) -> None:
    src = ctx.profile.source
    got = read_json(ctx.paths.fetched)
    sha = got["sha256"]
    name = download.basename(got["url"])
    print(f"{name}: sha256 {sha} (from {got['url']})")
    if src.sha256:
        if src.sha256 == sha:
            print(f"pin: matches the sha256 pinned in {ctx.profile.path}")
            return
        print(f"pin: {ctx.profile.path} pins {src.sha256}\n"
              f"pin: to trust the fetched file instead, put this line under [source] in that file:\n"
              f'sha256 = "{sha}"')
        if accept:
            raise die("this profile pins its hash in the profile itself; accept=1 does not edit profiles",
                      f"edit {ctx.profile.path} as shown above (and review why the hash changed)")
        return
    lock = read_lock(ctx)
    old = lock["sha256"] if lock else None
    if old == sha:
        print(f"pin: matches the hash recorded on first use ({lock_path(ctx)})")
        return
    print(f"pin: recorded {old or 'nothing yet'}"
          + (f" ({lock.get('package_version') or ''}, {lock.get('recorded')})" if lock else "")
          + f"\npin: now      {sha}\n"
          f"pin: or pin it in the profile, under [source]:\n"
          f'sha256 = "{sha}"')
    if not accept:
        print(f"pin: nothing recorded; to accept the new hash run `doit profile={ctx.profile.path} pin accept=1`")
        return
    version = dpkg_check(Path(got["path"]), src.package) if src.package else None
    write_lock(ctx, sha, src.package, version)
    print(f"pin: recorded {sha} in {lock_path(ctx)}")


def pin_task(ctx: Context) -> dict[str, Any]:
    @action
    def pin(accept: str) -> None:
        variables.adopt({"accept": accept})
        _pin(ctx, (get_var("accept") or "").lower() in ("1", "yes", "true"))

    return {
        "actions": [pin],
        "task_dep": ["fetch"],
        "uptodate": [False],
        "verbosity": 2,
        "params": [variables.param("accept", "1: record a changed hash of an unpinned source as trusted")],
    }

