"""fetch: get the kernel tarball (and its signature files) from the profile's urls.

Nothing fetched is trusted yet: remote files land in cache/incoming/ and only
verify moves a tarball into the content-addressed store. A tarball whose hash
is already known (pinned, or recorded on first use) and already stored is not
downloaded again, whichever profile or build dir asks for it. A local tarball
(Debian's) is hashed where it is, and is an input, so a package update is seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinyuki.config.context import Context
from tinyuki.records import Fetched
from tinyuki.source import download, trust
from tinyuki.stage import Output, Predicate, Stage

BACKOFF = 1.0
MIB = 1 << 20
# The files beside the tarball are small; a mirror sending more is broken or hostile.
SIGNATURE_MAX = 1 * MIB
SHA256SUMS_MAX = 16 * MIB


def known_sha256(ctx: Context) -> str | None:
    """The hash the source must have, if we know it before downloading: pinned, or recorded."""
    if ctx.profile.source.sha256:
        return ctx.profile.source.sha256
    lock = trust.read_lock(ctx.paths.locks, ctx.profile.source.urls[0])
    return lock["sha256"] if lock else None


def local_files(ctx: Context) -> list[Path]:
    return [download.local_path(u) for u in ctx.profile.source.urls
            if download.is_local(u) and download.local_path(u).is_file()]


def fetch(ctx: Context) -> None:
    src = ctx.profile.source
    kw: dict[str, Any] = {"retries": src.retries, "timeout": src.timeout, "backoff": BACKOFF,
                          "deadline": src.deadline}
    cap = src.max_size * MIB
    sha = known_sha256(ctx)
    all_remote = not any(download.is_local(u) for u in src.urls)
    if sha and all_remote and ctx.paths.stored(sha).is_file():
        print(f"fetch: {src.filename} ({sha[:16]}...) is already in the verified store; not downloading")
        got = {"path": str(ctx.paths.stored(sha)), "sha256": sha, "url": src.urls[0]}
    else:
        d = download.fetch(src.urls, ctx.paths.incoming, what=f"kernel tarball {src.filename}", max_size=cap,
                           expect_size=src.size, **kw)
        print(f"fetch: {d.url} -> {d.path} ({d.size} bytes, sha256 {d.sha256})")
        got = {"path": str(d.path), "sha256": d.sha256, "url": d.url}
    extra: dict[str, str | None] = {}
    for key, url, most in (("signature", src.signature, SIGNATURE_MAX), ("sha256sums", src.sha256sums, SHA256SUMS_MAX)):
        if url is None:
            extra[key] = None
            continue
        extra[key] = str(download.fetch([url], ctx.paths.incoming, what=f"{key} file", max_size=min(cap, most),
                                        **kw).path)
    Fetched(**got, **extra).save(ctx.paths.build)


def still_there(ctx: Context) -> bool:
    """fetched.json is only as good as the files it names."""
    rec = Fetched.peek(ctx.paths.build)
    return rec is not None and rec.present(ctx.paths.stored(rec.sha256))


STAGE = Stage("fetch", build=fetch,
              doc="Download the kernel tarball from the profile's mirrors (resumable, hashed while streaming).",
              outputs=(Output(Fetched.FILE),), inputs=local_files,
              checks=(Predicate(still_there, "the fetched files still exist"),))
