"""fetch: get the kernel tarball (and its signature files) from the profile's urls.

Nothing fetched is trusted yet: remote files land in cache/incoming/ and only
verify moves a tarball into the content-addressed store. A tarball whose hash
is already known (pinned, or recorded on first use) and already stored is not
downloaded again, whichever profile or build dir asks for it. A local tarball
(Debian's) is hashed where it is, and is a file_dep, so a package update is seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from doit.tools import config_changed

from tasks import download, verify
from tasks.context import Context
from tasks.errors import action
from tasks.fsutil import atomic_write_json, read_json

BACKOFF = 1.0


def settings(ctx: Context) -> dict[str, Any]:
    """What decides which bytes are fetched (trust settings are verify's business)."""
    s = ctx.profile.settings("source")
    return {k: s[k] for k in ("urls", "sha256", "signature", "sha256sums", "retries", "timeout")}


def known_sha256(ctx: Context) -> str | None:
    """The hash the source must have, if we know it before downloading: pinned, or recorded."""
    if ctx.profile.source.sha256:
        return ctx.profile.source.sha256
    lock = verify.read_lock(ctx)
    return lock["sha256"] if lock else None


def _local_files(ctx: Context) -> list[str]:
    return [str(download.local_path(u)) for u in ctx.profile.source.urls
            if download.is_local(u) and download.local_path(u).is_file()]


def _fetch(ctx: Context) -> None:
    src = ctx.profile.source
    kw: dict[str, Any] = {"retries": src.retries, "timeout": src.timeout, "backoff": BACKOFF}
    sha = known_sha256(ctx)
    all_remote = not any(download.is_local(u) for u in src.urls)
    if sha and all_remote and ctx.paths.stored(sha).is_file():
        print(f"fetch: {src.filename} ({sha[:16]}...) is already in the verified store; not downloading")
        got: dict[str, Any] = {"path": str(ctx.paths.stored(sha)), "sha256": sha, "url": src.urls[0]}
    else:
        d = download.fetch(src.urls, ctx.paths.incoming, what=f"kernel tarball {src.filename}", **kw)
        print(f"fetch: {d.url} -> {d.path} ({d.size} bytes, sha256 {d.sha256})")
        got = {"path": str(d.path), "sha256": d.sha256, "url": d.url}
    for key, url in (("signature", src.signature), ("sha256sums", src.sha256sums)):
        if url is None:
            got[key] = None
            continue
        d = download.fetch([url], ctx.paths.incoming, what=f"{key} file", **kw)
        got[key] = str(d.path)
    atomic_write_json(ctx.paths.fetched, got)


def _still_there(ctx: Context) -> bool:
    """fetched.json is only as good as the files it names (verify may have moved the tarball to the store)."""
    try:
        got = read_json(ctx.paths.fetched)
        if not (Path(got["path"]).is_file() or ctx.paths.stored(got["sha256"]).is_file()):
            return False
        return all(got.get(k) is None or Path(got[k]).is_file() for k in ("signature", "sha256sums"))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def task(ctx: Context) -> dict[str, Any]:
    return {
        "actions": [(action(_fetch), [ctx])],
        "file_dep": _local_files(ctx),
        "targets": [str(ctx.paths.fetched)],
        "uptodate": [config_changed(settings(ctx)), lambda: _still_there(ctx)],
        "verbosity": 2,
    }
