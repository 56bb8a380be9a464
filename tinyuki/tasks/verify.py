"""verify: decide whether the fetched tarball is the one the profile trusts, then store it by content.

Every anchor the profile names must hold: the pinned sha256, the OpenPGP
signature over the uncompressed tar, the clearsigned sha256sums.asc, and for
Debian's source package dpkg's own record of the file (tinyuki/source/trust.py).
A source without a pinned hash is recorded on first use and must keep that hash.
Only a tarball that passed lands in the store (cache/sha256/); a rejected
download is deleted so the next fetch starts afresh.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from tinyuki.config.context import Context
from tinyuki.errors import TinyukiError, die
from tinyuki.records import Fetched, Verified
from tinyuki.source import download, trust
from tinyuki.stage import Output, Predicate, Stage
from tinyuki.util.fs import atomic_copy, fsync_dir, sha256_file, sweep


def verify(ctx: Context) -> None:
    src = ctx.profile.source
    got = Fetched.load(ctx.paths.build)
    sha = got.sha256
    stored = ctx.paths.stored(sha)
    path = Path(got.path)
    if not path.is_file():
        if not stored.is_file():
            raise die(f"the fetched tarball {path} is gone", "run `doit fetch` again")
        path = stored
    filename = download.basename(got.url)
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
    trusted: list[str] = []
    if src.sha256:
        if sha != src.sha256:
            raise reject(f"sha256 mismatch for {filename} from {got.url}:\n    expected {src.sha256}\n"
                         f"    got      {sha}",
                         "the download is damaged or not the release the profile pins; if the profile's url was"
                         " changed on purpose, `doit pin` prints the new hash to paste")
        trusted.append("sha256 pin")
    if src.signature:
        if not got.signature:
            raise die(f"no signature file was fetched for {filename}", "run `doit fetch` again")
        verdict, seen = trust.check_signature(path, Path(got.signature), src.keyrings, src.signers,
                                        src.signature_over)
        if not verdict.ok:
            raise reject(verdict.message,
                         "do not use this tarball; check the signature url, signature_over (kernel.org signs the"
                         " uncompressed tar), keyrings and signers in the profile")
        if seen != sha:
            raise reject(f"{path} changed while it was being verified", "run `doit fetch verify` again")
        trusted.append(f"signature by {verdict.signer}")
    if src.sha256sums:
        if not got.sha256sums:
            raise die(f"no sha256sums file was fetched for {filename}", "run `doit fetch` again")
        listed, signer = trust.check_sha256sums(Path(got.sha256sums), filename, src.sha256sums_keyrings,
                                          src.sha256sums_signers)
        if listed != sha:
            raise reject(f"sha256 of {filename} is {sha}, but the signed sha256sums.asc lists {listed}",
                         "the download is damaged or was replaced; fetch it from another mirror")
        trusted.append(f"sha256sums.asc by {signer}")
    version = None
    if src.package:
        version = trust.dpkg_check(path, src.package)
        trusted.append(f"dpkg {src.package} {version}")
    if not src.sha256:
        lock = trust.read_lock(ctx.paths.locks, src.urls[0])
        if lock is None:
            trust.write_lock(ctx.paths.locks, src.urls[0], sha, src.package, version)
            print(f"verify: recorded {filename} sha256 {sha} on first use in "
                  f"{trust.lock_path(ctx.paths.locks, src.urls[0])}")
        elif lock["sha256"] != sha:
            raise die(
                f"{filename} changed since it was first used:\n    recorded {lock['sha256']}"
                f" ({lock.get('package') or ''} {lock.get('package_version') or ''}, {lock.get('recorded')})\n"
                f"    now      {sha} ({src.package or ''} {version or ''})",
                f"if you expected this (e.g. a Debian security update), accept it with"
                f" `doit profile={ctx.profile.path} pin accept=1`; otherwise find out who changed it")
        trusted.append("recorded on first use")
    _store(path, sha, stored, downloaded)
    Verified(sha256=sha, path=str(stored), filename=filename, trust=trusted, package=src.package,
             package_version=version).save(ctx.paths.build)
    print(f"verify: {filename} is trusted ({'; '.join(trusted)}) -> {stored}")


def _store(path: Path, sha: str, stored: Path, downloaded: bool) -> None:
    """Move (download) or copy (local file) into the store; a copy is re-hashed as it is written.

    A copy already in the store is re-hashed too, unless it is the very file
    just verified: the store's names are only as good as their bytes, and
    whoever can write the cache could have put anything under that name.
    """
    try:
        if stored.parent.is_dir():
            sweep(stored.parent, ".*.tmp")  # half-written copies of runs that crashed (atomic_copy's temps)
        if path == stored:
            return
        if stored.is_file():
            if sha256_file(stored) == sha:
                if downloaded:
                    download.discard(path)
                return
            print(f"verify: {stored} does not hold the bytes its name promises; replacing it with the verified file")
        stored.parent.mkdir(parents=True, exist_ok=True)
        if downloaded:
            os.chmod(path, 0o444)
            os.replace(path, stored)
            fsync_dir(stored.parent)
            return
        copied = atomic_copy(path, stored, 0o444)
    except OSError as e:
        raise _store_failure(e, stored) from e
    if copied != sha:
        download.discard(stored)
        raise die(f"{path} changed while it was being verified (now sha256 {copied})", "run `doit verify` again")


def _store_failure(e: OSError, stored: Path) -> TinyukiError:
    """Storing the verified tarball failed on this machine: say so, not as a traceback."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return die(f"no space left on the device while storing the verified tarball as {stored}",
                   f"free some space under {stored.parent.parent} (or use another cache_dir=), then run `doit verify`")
    return die(f"cannot store the verified tarball as {stored}: {e.strerror or e}",
               "the cache dir must be writable: fix its permissions or give another one (doit cache_dir=DIR)")


def trusted_still(ctx: Context) -> bool:
    """The stored tarball is still there, and an unpinned source still has the same recorded hash."""
    rec = Verified.peek(ctx.paths.build)
    if rec is None or not ctx.paths.stored(rec.sha256).is_file():
        return False
    if ctx.profile.source.sha256:
        return True
    try:
        lock = trust.read_lock(ctx.paths.locks, ctx.profile.source.urls[0])
    except TinyukiError:
        return False
    return lock is not None and lock["sha256"] == rec.sha256


STAGE = Stage("verify", build=verify,
              doc="Check sha256, OpenPGP signature / sha256sums.asc / dpkg, then store the tarball by content.",
              needs=("fetch",), outputs=(Output(Verified.FILE),),
              checks=(Predicate(trusted_still, "the verified tarball is stored and still trusted"),))
