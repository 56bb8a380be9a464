"""Downloading one file from a list of mirrors: streamed, hashed on the fly, resumable.

A kernel tarball is 140 MB over links that drop; so a download is written to a
`.part` file that survives an interrupted run, resumed with an HTTP Range
request, hashed while it streams (the bytes are read once), and only renamed to
its final name once complete and fsynced. Local files (plain paths, file://)
are hashed in place: copying them would only cost time and disk.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import hashlib
import os
import sys
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tinyuki.errors import TinyukiError, die
from tinyuki.util import lazy
from tinyuki.util.fs import CHUNK, atomic_write, fsync_dir

if TYPE_CHECKING:
    import requests
    import tqdm
    import urllib3
else:  # loaded when a download starts: a run with nothing to fetch does not pay for them
    requests = lazy.module("requests")
    tqdm = lazy.module("tqdm")
    urllib3 = lazy.module("urllib3")

# small enough that a dropped connection loses little: urllib3 discards the chunk it was reading
STREAM_CHUNK = 64 * 1024
RETRYABLE_STATUS = frozenset(range(500, 600)) | {408, 429}
# The longest wait between two attempts, whatever the backoff or a Retry-After asks: a mirror
# that wants a longer pause is skipped for the next one rather than waited for.
MAX_BACKOFF = 60.0
# Without a size known in advance, no download may exceed this (a profile's [source] max_size overrides it).
DEFAULT_MAX_SIZE = 2 << 30
# A whole fetch (every mirror, attempt and wait) ends by then, in seconds ([source] deadline overrides it).
DEFAULT_DEADLINE = 3600.0
SIZE_HINT = ("if the file really is that large, raise [source] max_size (MiB) in the profile; otherwise"
             " the mirror is broken or hostile: remove it from [source] urls")


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    url: str
    size: int


class _Retry(Exception):
    """A failure worth trying the same url again for (connection drop, timeout, 5xx)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # what the server asked for, in seconds


class _NextMirror(Exception):
    """A failure the same url will repeat (404, refused by policy): move to the next mirror."""


class _Deadline(Exception):
    """The whole fetch ran out of time: no mirror and no attempt is tried after it."""


@dataclass
class _Limits:
    """What one fetch may take: bytes (a cap) and time (a deadline on the monotonic clock)."""

    max_size: int
    expect_size: int | None
    deadline_at: float
    deadline: float
    too_large: bool = False  # a mirror's file was refused for its size: the hint says how to allow it

    def left(self) -> float:
        return self.deadline_at - time.monotonic()

    def check_time(self, what: str) -> None:
        if self.left() <= 0:
            raise _Deadline(f"{what} past the deadline of {self.deadline:g} s for the whole download")

    def cap(self, announced: int | None) -> int:
        """The most bytes the file may have: what is known in advance, else announced, else max_size."""
        if self.expect_size is not None:
            return self.expect_size
        return min(announced, self.max_size) if announced is not None else self.max_size


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
    """The file name a url ends in, made safe to be one file name here whatever the url encodes.

    Profiles refuse urls whose name is not plain (tinyuki/config/profile.py);
    this is the second guard for the names that reach a path: an encoded
    slash or NUL byte never becomes a directory or a truncated name.
    """
    if is_local(url):
        name = local_path(url).name
    else:
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    name = "".join("_" if c == "/" or ord(c) < 32 or ord(c) == 127 else c for c in name)
    return name if name not in ("", ".", "..") else "download"


def fetch(
    urls: Sequence[str],
    dest_dir: Path,
    *,
    retries: int = 4,
    timeout: float = 30,
    backoff: float = 1.0,
    progress: bool | None = None,
    what: str = "file",
    max_size: int = DEFAULT_MAX_SIZE,
    expect_size: int | None = None,
    deadline: float = DEFAULT_DEADLINE,
) -> Downloaded:
    """Get the first url that works; remote files land in dest_dir as `<sha256>-<name>`.

    Each url gets `retries` attempts (at least one) for connection errors,
    timeouts and 5xx answers, waiting backoff, 2*backoff, ... (at most
    MAX_BACKOFF) in between, or what the server's Retry-After asks; a 4xx
    answer, a missing local file or a Retry-After beyond MAX_BACKOFF moves on
    to the next url at once.

    No file may be larger than `expect_size` when it is known (pinned beside
    the hash), else than the first answer's Content-Length, and never than
    `max_size`: a mirror cannot fill the disk. The whole call, every mirror and
    wait included, ends after `deadline` seconds: a mirror that trickles a byte
    at a time cannot hold a build forever. Its partial file is kept for the next run.
    """
    failures: list[str] = []
    limits = _Limits(max_size=max_size, expect_size=expect_size, deadline_at=time.monotonic() + deadline,
                     deadline=deadline)
    try:
        with requests.Session() as session:
            for url in urls:
                if is_local(url):
                    try:
                        return _hash_local(url)
                    except OSError as e:
                        failures.append(f"{url}: {e.strerror or e}")
                        continue
                    except ValueError as e:  # a NUL byte in the path
                        failures.append(f"{url}: not a usable path ({e})")
                        continue
                got = _from_mirror(session, url, dest_dir, timeout, backoff, max(1, retries), progress, limits,
                                   failures)
                if got is not None:
                    return got
    except _Deadline as e:
        raise die(f"could not get the {what}: {e}" + ("".join(f"\n    {f}" for f in failures)),
                  "the mirror is too slow or stalls; try again (a partial download is resumed), use another mirror,"
                  " or raise [source] deadline (seconds) in the profile") from None
    listing = "\n    ".join(failures)
    raise die(f"could not get the {what} from any of {len(urls)} url(s):\n    {listing}",
              SIZE_HINT if limits.too_large else
              "check the network or the mirror list ([source] urls in the profile); a partial download"
              " is kept and resumed on the next run")


def _from_mirror(session: requests.Session, url: str, dest_dir: Path, timeout: float, backoff: float,
                 attempts: int, progress: bool | None, limits: _Limits, failures: list[str]) -> Downloaded | None:
    """Up to `attempts` tries of one url; None (with the reason in `failures`) when it is time for the next."""
    for attempt in range(1, attempts + 1):
        limits.check_time(f"{url}: gave up at attempt {attempt}/{attempts},")
        try:
            return _http(session, url, dest_dir, timeout, progress, limits)
        except _NextMirror as e:
            failures.append(f"{url}: {e}")
            return None
        except _Retry as e:
            if attempt == attempts:
                failures.append(f"{url}: {e} (gave up after {attempts} attempts)")
                return None
            wait = min(backoff * 2 ** (attempt - 1), MAX_BACKOFF)
            asked = e.retry_after
            if asked is not None:
                if asked > MAX_BACKOFF:
                    failures.append(f"{url}: {e}; the server asks to retry after {asked:g}s, longer than"
                                    f" tinyuki waits ({MAX_BACKOFF:g}s)")
                    return None
                wait = asked
            if wait >= limits.left():
                raise _Deadline(f"{url}: {e}; the next attempt would start past the deadline of"
                                f" {limits.deadline:g} s for the whole download") from None
            print(f"fetch: {url}: {e}; retrying in {wait:g}s (attempt {attempt + 1}/{attempts})",
                  file=sys.stderr, flush=True)
            time.sleep(wait)
    return None  # pragma: no cover - the loop returns on its last attempt


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date); None if absent or garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


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


def _read_validator(validator_file: Path) -> tuple[str, int | None]:
    """The partial file's validator (ETag or Last-Modified) and the size its first answer announced."""
    try:
        lines = validator_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return "", None
    validator = lines[0].strip() if lines else ""
    announced = int(lines[1]) if len(lines) > 1 and lines[1].strip().isdigit() else None
    return validator, announced


def _raw_chunks(resp: requests.Response) -> Iterator[bytes]:
    """The body exactly as sent: never decoded, whatever Content-Encoding says (identity was asked for).

    read1 returns what has arrived, so the deadline is checked as data trickles in;
    urllib3's own errors become the ones requests raises, so one handler sees them all.
    """
    while True:
        try:
            chunk = resp.raw.read1(STREAM_CHUNK, decode_content=False)
        except urllib3.exceptions.ReadTimeoutError as e:
            raise requests.Timeout(e) from e
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.SSLError) as e:
            raise requests.exceptions.ChunkedEncodingError(e) from e
        if not chunk:
            return
        yield chunk


def _http(session: requests.Session, url: str, dest_dir: Path, timeout: float, progress: bool | None,
          limits: _Limits) -> Downloaded:
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = basename(url)
    part = dest_dir / f"{url_key(url)}-{name}.part"
    validator_file = part.with_name(part.name + ".validator")
    have = part.stat().st_size if part.exists() else 0
    # identity: the bytes hashed and counted must be the file's bytes, not a re-encoding
    headers = {"Accept-Encoding": "identity"}
    validator, first_announced = _read_validator(validator_file)
    if have and validator:
        # If-Range: the server sends the rest only if the file is still the one we started
        # (same ETag or Last-Modified); a file replaced meanwhile comes back whole
        headers["Range"] = f"bytes={have}-"
        headers["If-Range"] = validator
    elif have:
        have = 0  # nothing proves the partial file is the same version: never splice, start over
    wait = max(0.1, min(float(timeout), limits.left()))
    try:
        resp = session.get(url, stream=True, timeout=(wait, wait), headers=headers)
    except (requests.ConnectionError, requests.Timeout) as e:
        raise _Retry(_reason(e)) from e
    except requests.RequestException as e:
        raise _NextMirror(_reason(e)) from e
    with resp:
        if resp.status_code == 416 and have:
            part.unlink()  # our partial file is longer than the file now is: start over
            raise _Retry("server refused to resume (416); starting over")
        if resp.status_code in RETRYABLE_STATUS:
            raise _Retry(f"HTTP {resp.status_code} {resp.reason}", retry_after(resp.headers.get("Retry-After")))
        if resp.status_code >= 400:
            raise _NextMirror(f"HTTP {resp.status_code} {resp.reason}")
        length_text = resp.headers.get("Content-Length")
        length = int(length_text) if length_text and length_text.isdigit() else None
        h = hashlib.sha256()
        resumed = resp.status_code == 206 and have and _content_range_start(resp.headers.get("Content-Range")) == have
        if resumed:
            total = have + length if length is not None else None
            announced = first_announced if first_announced is not None else total
        else:
            have = 0  # the server ignored Range (or the file changed): take the whole body
            total = announced = length
        cap = limits.cap(announced)
        if total is not None and total > cap:
            limits.too_large = True
            if resumed:
                _forget(part, validator_file)
            raise _NextMirror(f"the file is {total} bytes, larger than {_why(limits, cap)}")
        try:
            out = open(part, "r+b" if resumed else "wb")  # noqa: SIM115 - closed below, after the stream
        except OSError as e:
            raise _local_failure(e, part) from e
        with out, _bar(name, total, have, progress) as bar:
            try:
                if resumed:
                    out.seek(have)
                    out.truncate()
                    with open(part, "rb") as f:  # the kept prefix joins the running hash
                        while chunk := f.read(CHUNK):
                            h.update(chunk)
                else:
                    # The order matters: the old version's validator goes first, then its bytes (the
                    # truncating open above), and only then is the new version's validator written. A
                    # run killed in between leaves bytes without a validator (started over next time)
                    # or a validator over an empty file, never old bytes under the new validator.
                    validator_file.unlink(missing_ok=True)
                    os.fsync(out.fileno())
                    fsync_dir(dest_dir)
                    fresh = resp.headers.get("ETag") or resp.headers.get("Last-Modified") or ""
                    if fresh and not fresh.startswith("W/"):  # weak ETags cannot guard a byte range
                        atomic_write(validator_file, fresh + "\n" + (f"{total}\n" if total is not None else ""))
            except OSError as e:
                raise _local_failure(e, part) from e
            size = have
            try:
                for chunk in _raw_chunks(resp):
                    size += len(chunk)
                    if size > cap:
                        limits.too_large = True
                        out.close()
                        _forget(part, validator_file)
                        raise _NextMirror(f"the mirror sent more than {_why(limits, cap)}")
                    try:
                        out.write(chunk)
                    except OSError as e:
                        raise _local_failure(e, part) from e
                    h.update(chunk)
                    bar.update(len(chunk))
                    if limits.left() <= 0:
                        _keep(out)
                        raise _Deadline(f"{url}: {size} of {total if total is not None else '?'} bytes arrived"
                                        f" before the deadline of {limits.deadline:g} s for the whole download")
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
                _keep(out)
                raise _Retry(f"{_reason(e)} after {size} bytes; will resume") from e
            try:
                _keep(out)
            except OSError as e:
                raise _local_failure(e, part) from e
        if total is not None and size != total:
            raise _Retry(f"connection closed after {size} of {total} bytes; will resume")
    digest = h.hexdigest()
    final = dest_dir / f"{digest}-{name}"
    os.replace(part, final)
    validator_file.unlink(missing_ok=True)
    fsync_dir(dest_dir)
    return Downloaded(path=final, sha256=digest, url=url, size=size)


def _keep(out: IO[bytes]) -> None:
    """What arrived reaches the disk: the next run resumes from it."""
    out.flush()
    os.fsync(out.fileno())


def _forget(part: Path, validator_file: Path) -> None:
    """A partial file that cannot become the right file (too large): never resumed."""
    validator_file.unlink(missing_ok=True)
    part.unlink(missing_ok=True)


def _why(limits: _Limits, cap: int) -> str:
    if limits.expect_size is not None:
        return f"the {cap} bytes pinned for it ([source] size)"
    if cap < limits.max_size:
        return f"the {cap} bytes the mirror first announced"
    return f"the limit of {cap} bytes ([source] max_size)"


def _local_failure(e: OSError, path: Path) -> TinyukiError:
    """Writing the download failed on this machine (a full disk, a read-only cache): no mirror can help."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return die(f"no space left on the device while writing the download {path}",
                   f"free some space under {path.parent} (or use another cache_dir=); the partial file is kept"
                   " and resumed on the next run")
    return die(f"cannot write the download {path}: {e.strerror or e}",
               "the cache dir must be writable: fix its permissions or give another one (doit cache_dir=DIR)")


def _bar(name: str, total: int | None, initial: int, progress: bool | None) -> tqdm.tqdm:
    """bytes, rate and ETA on a terminal; silent in logs and CI."""
    show = sys.stderr.isatty() if progress is None else progress
    return tqdm.tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
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
