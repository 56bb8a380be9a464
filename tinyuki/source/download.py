"""Downloading one file from a list of mirrors: streamed, hashed on the fly, resumable.

A kernel tarball is 140 MB over links that drop; so a download is written to a
`.part` file that survives an interrupted run, resumed with an HTTP Range
request, hashed while it streams (the bytes are read once), and only renamed to
its final name once complete and fsynced. Local files (plain paths, file://)
are hashed in place: copying them would only cost time and disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
from tqdm import tqdm

from tinyuki.errors import die
from tinyuki.util.fs import CHUNK, atomic_write, fsync_dir

# small enough that a dropped connection loses little: urllib3 discards the chunk it was reading
STREAM_CHUNK = 64 * 1024
RETRYABLE_STATUS = frozenset(range(500, 600)) | {408, 429}


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    url: str
    size: int


class _Retry(Exception):
    """A failure worth trying the same url again for (connection drop, timeout, 5xx)."""


class _NextMirror(Exception):
    """A failure the same url will repeat (404, refused by policy): move to the next mirror."""


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> Path:
    if url.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    return Path(url)


def url_key(url: str) -> str:
    """A short stable name for a url, so partial downloads from different urls never mix."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def basename(url: str) -> str:
    if is_local(url):
        return local_path(url).name
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]) or "download"


def fetch(
    urls: Sequence[str],
    dest_dir: Path,
    *,
    retries: int = 4,
    timeout: float = 30,
    backoff: float = 1.0,
    progress: bool | None = None,
    what: str = "file",
) -> Downloaded:
    """Get the first url that works; remote files land in dest_dir as `<sha256>-<name>`.

    Each url gets `retries` attempts (at least one) for connection errors,
    timeouts and 5xx answers, waiting backoff, 2*backoff, ... in between; a 4xx
    answer or a missing local file moves on to the next url at once.
    """
    failures: list[str] = []
    with requests.Session() as session:
        for url in urls:
            if is_local(url):
                try:
                    return _hash_local(url)
                except OSError as e:
                    failures.append(f"{url}: {e.strerror or e}")
                    continue
            attempts = max(1, retries)
            for attempt in range(1, attempts + 1):
                try:
                    return _http(session, url, dest_dir, timeout, progress)
                except _NextMirror as e:
                    failures.append(f"{url}: {e}")
                    break
                except _Retry as e:
                    if attempt == attempts:
                        failures.append(f"{url}: {e} (gave up after {attempts} attempts)")
                        break
                    wait = backoff * 2 ** (attempt - 1)
                    print(f"fetch: {url}: {e}; retrying in {wait:g}s (attempt {attempt + 1}/{attempts})",
                          file=sys.stderr, flush=True)
                    time.sleep(wait)
    listing = "\n    ".join(failures)
    raise die(f"could not get the {what} from any of {len(urls)} url(s):\n    {listing}",
              "check the network or the mirror list ([source] urls in the profile); a partial download"
              " is kept and resumed on the next run")


def _hash_local(url: str) -> Downloaded:
    path = local_path(url)
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return Downloaded(path=path.absolute(), sha256=h.hexdigest(), url=url, size=size)


def _content_range_start(value: str | None) -> int | None:
    """The first byte of a `Content-Range: bytes 100-199/200` answer."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _http(session: requests.Session, url: str, dest_dir: Path, timeout: float, progress: bool | None) -> Downloaded:
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = basename(url)
    part = dest_dir / f"{url_key(url)}-{name}.part"
    validator_file = part.with_name(part.name + ".validator")
    have = part.stat().st_size if part.exists() else 0
    # identity: the bytes hashed and counted must be the file's bytes, not a re-encoding
    headers = {"Accept-Encoding": "identity"}
    validator = validator_file.read_text().strip() if validator_file.exists() else ""
    if have and validator:
        # If-Range: the server sends the rest only if the file is still the one we started
        # (same ETag or Last-Modified); a file replaced meanwhile comes back whole
        headers["Range"] = f"bytes={have}-"
        headers["If-Range"] = validator
    elif have:
        have = 0  # nothing proves the partial file is the same version: never splice, start over
    try:
        resp = session.get(url, stream=True, timeout=(timeout, timeout), headers=headers)
    except (requests.ConnectionError, requests.Timeout) as e:
        raise _Retry(_reason(e)) from e
    except requests.RequestException as e:
        raise _NextMirror(_reason(e)) from e
    with resp:
        if resp.status_code == 416 and have:
            part.unlink()  # our partial file is longer than the file now is: start over
            raise _Retry("server refused to resume (416); starting over")
        if resp.status_code in RETRYABLE_STATUS:
            raise _Retry(f"HTTP {resp.status_code} {resp.reason}")
        if resp.status_code >= 400:
            raise _NextMirror(f"HTTP {resp.status_code} {resp.reason}")
        h = hashlib.sha256()
        if resp.status_code == 206 and have and _content_range_start(resp.headers.get("Content-Range")) == have:
            mode = "r+b"
            with open(part, "rb") as f:  # the kept prefix joins the running hash
                while chunk := f.read(CHUNK):
                    h.update(chunk)
        else:
            mode, have = "wb", 0  # the server ignored Range (or the file changed): take the whole body
            fresh = resp.headers.get("ETag") or resp.headers.get("Last-Modified") or ""
            if fresh and not fresh.startswith("W/"):  # weak ETags cannot guard a byte range
                atomic_write(validator_file, fresh + "\n")
            else:
                validator_file.unlink(missing_ok=True)
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        size = have
        with open(part, mode) as out, _bar(name, total, have, progress) as bar:
            out.seek(have)
            out.truncate()
            try:
                for chunk in resp.iter_content(STREAM_CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
                out.flush()
                os.fsync(out.fileno())
                raise _Retry(f"{_reason(e)} after {size} bytes; will resume") from e
            out.flush()
            os.fsync(out.fileno())
        if total is not None and size != total:
            raise _Retry(f"connection closed after {size} of {total} bytes; will resume")
    digest = h.hexdigest()
    final = dest_dir / f"{digest}-{name}"
    os.replace(part, final)
    validator_file.unlink(missing_ok=True)
    fsync_dir(dest_dir)
    return Downloaded(path=final, sha256=digest, url=url, size=size)


def _bar(name: str, total: int | None, initial: int, progress: bool | None) -> tqdm:
    """bytes, rate and ETA on a terminal; silent in logs and CI."""
    show = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                disable=not show, file=sys.stderr, leave=False, mininterval=0.5)


def _reason(e: BaseException) -> str:
    """requests nests the cause several exceptions deep; the innermost text is the useful one."""
    while True:
        inner = e.args[0] if e.args and isinstance(e.args[0], BaseException) else None
        reason = getattr(inner, "reason", None) if inner is not None else None
        if isinstance(reason, BaseException):
            e = reason
        elif inner is not None:
            e = inner
        else:
            break
    text = e.args[0] if e.args and isinstance(e.args[0], str) else (str(e) or type(e).__name__)
    if isinstance(e, TimeoutError) or "timed out" in text.lower():
        return f"timed out ({text})"
    return text


def discard(path: Path) -> None:
    """Remove a rejected download so the next fetch gets it afresh."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
