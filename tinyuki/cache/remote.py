"""A remote artifact cache over plain HTTP GET/PUT, holding the same verified entries as the local store.

A team or CI shares finished stages the way BitBake's sstate mirrors, Bazel's
HTTP cache and ccache's HTTP storage do: a machine that never built anything
fetches a stage's entry from a server and compiles nothing. The protocol is
the one those tools use, so nginx's WebDAV module (`dav_methods PUT`), any
WebDAV server or an HTTP gateway in front of S3 serves it. The remote has the
local store's layout (tinyuki/cache/store.py):

    URL/entries/<key>.json     the entry, byte for byte as the local store keeps it
    URL/blobs/ab/abcd...       file contents by sha256

Nothing from the server is trusted: a pulled entry is parsed and checked like
a local one (`entry_problem`), every blob is hashed while it downloads and
must match the entry's sha256 and size before it enters the local store, and
only then is the entry saved locally and restored by the local store, which
checks every blob once more. A push writes the blobs first and the entry
last, so a reader never sees an entry whose blobs are not there yet.

The server is a convenience, never a requirement: a miss, an error status, a
tampered or truncated blob, or a server that is down costs a warning and the
stage is built (a server found down is not asked again in this run). Read-only
mode (pull requests from forks) never writes. Credentials in the URL
(`https://user:password@host/path`) are sent as HTTP basic auth and never
printed: every message goes through `redact`.

Trust: whoever can write to the server decides what goes into everyone's
kernels. A writer given a signing key (an ssh key, `ssh-keygen -Y sign`)
embeds a signature over the entry's canonical JSON, which names every blob's
sha256; a reader given trusted keys refuses entries that are unsigned or
signed by any other key.

Settings tune how a build runs, never what it produces (doit variable first,
then the environment; empty means unset):

    artifact_remote=URL              TINYUKI_ARTIFACT_REMOTE
    artifact_remote_mode=rw|ro       TINYUKI_ARTIFACT_REMOTE_MODE        (default rw: read and write)
    artifact_signing_key=PATH        TINYUKI_ARTIFACT_SIGNING_KEY        (ssh private key: sign pushed entries)
    artifact_trusted_keys=PATH       TINYUKI_ARTIFACT_TRUSTED_KEYS       (ssh public keys, one a line: require)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from tinyuki.cache.store import CorruptEntry, Store, entry_problem
from tinyuki.config.context import variable_or_env
from tinyuki.errors import die
from tinyuki.util import lazy
from tinyuki.util.fs import CHUNK
from tinyuki.util.runner import run

if TYPE_CHECKING:
    import requests
else:  # loaded when a remote is first reached: a run with nothing to fetch or push does not pay for it
    requests = lazy.module("requests")

VAR_REMOTE, VAR_MODE, VAR_SIGNING, VAR_TRUSTED = (
    "artifact_remote", "artifact_remote_mode", "artifact_signing_key", "artifact_trusted_keys")
ENV_REMOTE, ENV_MODE, ENV_SIGNING, ENV_TRUSTED = (
    "TINYUKI_ARTIFACT_REMOTE", "TINYUKI_ARTIFACT_REMOTE_MODE", "TINYUKI_ARTIFACT_SIGNING_KEY",
    "TINYUKI_ARTIFACT_TRUSTED_KEYS")
VARIABLES = (VAR_REMOTE, VAR_MODE, VAR_SIGNING, VAR_TRUSTED)

READ_WRITE, READ_ONLY = "read-write", "read-only"
MODES = {"rw": READ_WRITE, "read-write": READ_WRITE, "readwrite": READ_WRITE,
         "ro": READ_ONLY, "read-only": READ_ONLY, "readonly": READ_ONLY}

# (connect, read) seconds: a dead host must not stall a build for minutes, a slow big blob may take a while
# between chunks only this long.
TIMEOUT = (5.0, 60.0)
# An entry is a few KB (a file list); anything far bigger is not one of ours.
MAX_ENTRY_BYTES = 4 << 20
# The namespace of our ssh signatures: a signature made for anything else (a git commit) never verifies here.
SIGN_NAMESPACE = "tinyuki-artifact-cache"
SIGNER = "tinyuki-artifact-cache"
SSH_KEY_TYPES = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")
SSH_TIMEOUT = 60.0

_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s]+@")


class RemoteError(Exception):
    """The server could not be used for this stage (down, an error status, a bad answer): build instead."""


class Refused(Exception):
    """The server's entry or blob cannot be trusted (tampered, truncated, unsigned, wrongly signed)."""


# ---------------------------------------------------------------- settings

def redact(text: str, url: str | None = None) -> str:
    """`text` with credentials removed: user:password in any URL, and the password of `url` anywhere.

    Every message that may hold the remote's URL (ours, or an exception of
    requests quoting it) passes through here before it is printed or stored.
    """
    text = _USERINFO_RE.sub(lambda m: m.group("scheme") + "***@", text)
    if url:
        parts = urlsplit(url)
        for secret in (parts.password, unquote(parts.password or "")):
            if secret and len(secret) >= 4:  # shorter ones would mangle unrelated words; URLs are covered above
                text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class RemoteSettings:
    """Where the remote cache is and how it may be used; `url` carries no credentials."""

    url: str
    auth: tuple[str, str] | None = None
    mode: str = READ_WRITE
    signing_key: Path | None = None
    trusted_keys: Path | None = None

    @property
    def read_only(self) -> bool:
        return self.mode == READ_ONLY

    @property
    def shown(self) -> str:
        """The URL as printed: with `***@` where credentials were given."""
        if self.auth is None:
            return self.url
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(netloc="***@" + parts.netloc))


def parse_url(url: str, where: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without credentials (trailing slash dropped), and the basic-auth pair it carried."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise die(f"{where}={redact(url)!r} is not an http:// or https:// URL",
                  "give the remote artifact cache's base URL, e.g. https://cache.example/tinyuki")
    auth = (unquote(parts.username or ""), unquote(parts.password or "")) if parts.username is not None else None
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")), auth


def settings_from(variables: Mapping[str, str | None], environ: Mapping[str, str]) -> RemoteSettings | None:
    """The remote cache of this run, or None; doit variables win over the environment."""
    url, where = variable_or_env(variables, environ, VAR_REMOTE, ENV_REMOTE)
    if url is None or url.lower() in ("off", "0", "no", "none"):
        return None
    base, auth = parse_url(url, where)
    mode_value, mode_where = variable_or_env(variables, environ, VAR_MODE, ENV_MODE)
    mode = MODES.get((mode_value or "rw").lower())
    if mode is None:
        raise die(f"{mode_where}={mode_value!r} is not a remote cache mode",
                  "use rw (read and write, the default) or ro (read only, e.g. for pull requests from forks)")
    paths: dict[str, Path | None] = {}
    for var, env in ((VAR_SIGNING, ENV_SIGNING), (VAR_TRUSTED, ENV_TRUSTED)):
        value, w = variable_or_env(variables, environ, var, env)
        paths[var] = Path(value).expanduser() if value else None
        if value and not paths[var].is_file():  # type: ignore[union-attr]
            raise die(f"{w}={value!r}: no such file",
                      "give an ssh private key to sign with, or a file of trusted ssh public keys (one a line)")
    trusted = paths[VAR_TRUSTED]
    if trusted is not None:
        allowed_signers(trusted)  # a malformed trust file is an error now, not a refused entry later
    return RemoteSettings(url=base, auth=auth, mode=mode, signing_key=paths[VAR_SIGNING], trusted_keys=trusted)


# ---------------------------------------------------------------- signatures

def signed_bytes(entry: Mapping[str, Any]) -> bytes:
    """What a signature covers: the entry's canonical JSON without the signature (it names every blob's sha256)."""
    body = {k: v for k, v in entry.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def allowed_signers(trusted: Path) -> str:
    """ssh-keygen's allowed_signers text for a file of public keys, each trusted for our namespace only."""
    lines = []
    for n, line in enumerate(trusted.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if len(words) < 2 or not words[0].startswith(SSH_KEY_TYPES):
            raise die(f"{trusted}:{n} is not an ssh public key line ({line[:40]!r})",
                      "put one public key a line, as in a .pub file: ssh-ed25519 AAAA... comment")
        lines.append(f'{SIGNER} namespaces="{SIGN_NAMESPACE}" {words[0]} {words[1]}')
    if not lines:
        raise die(f"{trusted} holds no public key", "put the team's signing keys' .pub lines in it")
    return "\n".join(lines) + "\n"


def sign(entry: dict[str, Any], key: Path) -> dict[str, Any]:
    """The entry with an ssh signature (`ssh-keygen -Y sign`) over `signed_bytes`."""
    with tempfile.TemporaryDirectory(prefix="tinyuki-sign-") as tmp:
        data = Path(tmp) / "entry.json"
        data.write_bytes(signed_bytes(entry))
        run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", SIGN_NAMESPACE, str(data)], quiet=True,
            what="signing the artifact cache entry", timeout=SSH_TIMEOUT,
            hint="the key must be an ssh private key without a passphrase (or loaded in ssh-agent)")
        signature = (Path(tmp) / "entry.json.sig").read_text(encoding="ascii")
    return {**entry, "signature": {"format": "ssh", "namespace": SIGN_NAMESPACE, "signature": signature}}


def verify_signature(entry: Mapping[str, Any], trusted: Path) -> None:
    """Refused unless the entry carries an ssh signature by one of the trusted keys."""
    sig = entry.get("signature")
    if not isinstance(sig, dict) or not isinstance(sig.get("signature"), str):
        raise Refused("it is not signed, and trusted keys are required")
    if sig.get("format") != "ssh":
        raise Refused(f"its signature has format {str(sig.get('format'))[:20]!r}, not ssh")
    with tempfile.TemporaryDirectory(prefix="tinyuki-verify-") as tmp:
        signers = Path(tmp) / "allowed_signers"
        signers.write_text(allowed_signers(trusted), encoding="utf-8")
        sigfile = Path(tmp) / "entry.sig"
        sigfile.write_text(sig["signature"], encoding="ascii", errors="replace")
        proc = run(["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", SIGNER, "-n", SIGN_NAMESPACE,
                    "-s", str(sigfile)], input=signed_bytes(entry), quiet=True, ok_codes=None,
                   timeout=SSH_TIMEOUT, what="checking the entry's signature")
    if proc.returncode != 0:
        why = proc.stdout.decode(errors="replace").strip().splitlines()
        raise Refused(f"its signature is not by a trusted key ({why[-1] if why else 'ssh-keygen failed'})")


# ---------------------------------------------------------------- the client

@dataclass
class Traffic:
    """What one stage moved over the network: for the stage's line and `doit stats`."""

    down: int = 0
    up: int = 0
    blobs_down: int = 0
    blobs_up: int = 0


# Base URLs found down in this process: doit runs the stages in one process, and
# one dead server must cost one timeout per run, not one per stage.
_DOWN: set[str] = set()


@dataclass
class Remote:
    """One remote cache, used by one stage; `traffic` counts the bytes it moved."""

    settings: RemoteSettings
    session: requests.Session = field(default_factory=lambda: requests.Session())
    traffic: Traffic = field(default_factory=Traffic)
    # blobs the server served wrong in this stage: a push uploads them again even if a HEAD says they exist
    bad: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.settings.auth is not None:
            self.session.auth = self.settings.auth

    # -- plumbing
    def url(self, rel: str) -> str:
        return f"{self.settings.url}/{rel}"

    @property
    def down(self) -> bool:
        return self.settings.url in _DOWN

    def say(self, text: str) -> str:
        """A message fit to print: no user:password in any URL, and never the password itself."""
        text = redact(text)
        if self.settings.auth is not None and len(self.settings.auth[1]) >= 4:
            text = text.replace(self.settings.auth[1], "***")
        return text

    @contextlib.contextmanager
    def _request(self, method: str, rel: str, **kw: Any) -> Iterator[requests.Response]:
        """One request; a connection failure marks the server down for this run. Errors never carry credentials."""
        if self.down:
            raise RemoteError(f"{self.settings.shown} was found down earlier in this run")
        try:
            with self.session.request(method, self.url(rel), timeout=TIMEOUT, allow_redirects=False,
                                      **kw) as resp:
                yield resp
        except (requests.ConnectionError, requests.Timeout) as e:
            _DOWN.add(self.settings.url)
            raise RemoteError(self.say(f"{self.settings.shown} cannot be reached ({type(e).__name__}: {e})"
                                        "; not asking it again in this run")) from None
        except requests.RequestException as e:
            raise RemoteError(self.say(f"{method} {rel}: {type(e).__name__}: {e}")) from None

    def _status_error(self, method: str, rel: str, resp: requests.Response) -> RemoteError:
        return RemoteError(self.say(f"{method} {self.url(rel)} answered {resp.status_code} {resp.reason}"))

    # -- reading
    def get_entry(self, key: str) -> dict[str, Any] | None:
        """The server's entry for `key` (parsed and checked, signature too when required), None on a 404."""
        rel = f"entries/{key}.json"
        with self._request("GET", rel, stream=True) as resp:
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                raise self._status_error("GET", rel, resp)
            data = self._read_capped(resp, MAX_ENTRY_BYTES, rel)
        self.traffic.down += len(data)
        try:
            entry = json.loads(data)
        except ValueError as e:
            raise Refused(f"its entry is not valid JSON ({e}); truncated?") from None
        problem = entry_problem(entry, key)
        if problem:
            raise Refused(f"its entry cannot be trusted: {problem}")
        if self.settings.trusted_keys is not None:
            verify_signature(entry, self.settings.trusted_keys)
        return entry

    def _read_capped(self, resp: requests.Response, cap: int, rel: str) -> bytes:
        buf = bytearray()
        try:
            for chunk in resp.iter_content(CHUNK):
                buf.extend(chunk)
                if len(buf) > cap:
                    raise Refused(f"{rel} is larger than {cap} bytes")
        except requests.RequestException as e:
            raise Refused(self.say(f"{rel}: the body was cut off ({type(e).__name__})")) from None
        return bytes(buf)

    def fetch_blob(self, store: Store, meta: Mapping[str, Any], rel: str) -> None:
        """Download one blob into the local store, hashed on the way; Refused unless it is exactly the entry's."""
        sha, size = str(meta["sha256"]), int(meta["size"])
        with contextlib.suppress(OSError):
            if store.blob(sha).stat().st_size == size and _sha256_path(store.blob(sha)) == sha:
                return  # already here (another entry shares it)
        path = f"blobs/{sha[:2]}/{sha}"
        store.tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=store.tmp, prefix="remote.")
        try:
            self._download(store, path, Path(tmp), fd, sha, size, rel)
        except Refused:
            self.bad.add(sha)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _download(self, store: Store, path: str, tmp: Path, fd: int, sha: str, size: int, rel: str) -> None:
        """Stream one blob into `tmp`, hashing it; into the store only when size and sha256 are the entry's."""
        h = hashlib.sha256()
        got = 0
        with os.fdopen(fd, "wb") as out, self._request("GET", path, stream=True) as resp:
            if resp.status_code == 404:
                raise Refused(f"the blob of {rel} ({sha[:12]}…) is missing on the server")
            if resp.status_code != 200:
                raise self._status_error("GET", path, resp)
            try:
                for chunk in resp.iter_content(CHUNK):
                    got += len(chunk)
                    if got > size:
                        raise Refused(f"the blob of {rel} ({sha[:12]}…) is longer than its {size} bytes")
                    h.update(chunk)
                    out.write(chunk)
            except requests.RequestException as e:
                raise Refused(self.say(f"the blob of {rel} ({sha[:12]}…) was cut off after {got} of {size}"
                                        f" bytes ({type(e).__name__})")) from None
        self.traffic.down += got
        if got != size:
            raise Refused(f"the blob of {rel} ({sha[:12]}…) is truncated: {got} of {size} bytes")
        if h.hexdigest() != sha:
            raise Refused(f"the blob of {rel} does not match its sha256 {sha[:12]}… (tampered?)")
        stored, _ = store.put_file(tmp)
        if stored != sha:  # changed on disk between the hash and the copy
            raise CorruptEntry(f"the blob of {rel} changed while it was stored")
        self.traffic.blobs_down += 1

    def pull(self, key: str, store: Store, task: str | None = None) -> dict[str, Any] | None:
        """Copy the server's entry for `key` and its blobs into the local store, all verified; None on a miss.

        With `task`, the entry must be that stage's (a server cannot hand one stage another's outputs).
        The entry is saved locally only after every blob arrived and matched.
        """
        entry = self.get_entry(key)
        if entry is None:
            return None
        if task is not None and entry.get("task") != task:
            raise Refused(f"its entry is for stage {str(entry.get('task'))[:40]!r}, not {task}")
        for section in ("files", "trees"):
            for rel, meta in sorted(entry.get(section, {}).items()):
                self.fetch_blob(store, meta, rel)
        store.save_entry(entry)
        return entry

    # -- writing
    def _exists(self, rel: str, size: int) -> bool:
        with self._request("HEAD", rel) as resp:
            return resp.status_code == 200 and resp.headers.get("Content-Length") == str(size)

    def _put(self, rel: str, body: Any, size: int) -> None:
        with self._request("PUT", rel, data=body, headers={"Content-Length": str(size)}) as resp:
            if resp.status_code not in (200, 201, 204):
                raise self._status_error("PUT", rel, resp)
        self.traffic.up += size

    def push(self, entry: dict[str, Any], store: Store) -> dict[str, Any]:
        """Upload the blobs the server lacks, then the entry (signed when a key is set): the entry last."""
        if self.settings.read_only:
            raise RemoteError("read-only")
        if self.settings.signing_key is not None:
            entry = sign(entry, self.settings.signing_key)
        metas = {m["sha256"]: int(m["size"]) for s in ("files", "trees") for m in entry.get(s, {}).values()}
        for sha, size in sorted(metas.items()):
            rel = f"blobs/{sha[:2]}/{sha}"
            if sha not in self.bad and self._exists(rel, size):
                continue
            with open(store.blob(sha), "rb") as f:
                self._put(rel, f, size)
            self.traffic.blobs_up += 1
        data = json.dumps(entry, indent=1, sort_keys=True).encode() + b"\n"
        self._put(f"entries/{entry['key']}.json", data, len(data))
        return entry


def _sha256_path(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def for_run(variables: Mapping[str, str | None], environ: Mapping[str, str] | None = None) -> Remote | None:
    """The remote cache client for this run's settings, or None when no remote is configured."""
    settings = settings_from(variables, os.environ if environ is None else environ)
    return Remote(settings) if settings is not None else None

