"""The remote artifact cache client (tinyuki/cache/remote.py) against a hostile HTTP server on 127.0.0.1.

Whatever the server does (tampered, truncated, longer or wrong bodies, error
statuses, being down, unsigned or wrongly signed entries) the local store
must end up either with a complete, verified entry or with nothing, and the
client must say what happened without ever printing a password.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import hostilecache
from tests.helpers.daemons import free_port
from tinyuki.cache import remote as rc
from tinyuki.cache.store import SCHEMA, Store
from tinyuki.errors import TinyukiError

KEY = "a" * 64
OTHER = "b" * 64


def make_entry(store: Store, key: str = KEY) -> dict[str, Any]:
    """A small entry (two files) in `store`, saved, as a stage's save would write it."""
    files = {}
    for rel, data in (("out/one.bin", b"one" * 1000), ("two.txt", b"second file\n")):
        sha, size = store.put_bytes(data)
        files[rel] = {"sha256": sha, "size": size, "mode": 0o644, "relocated": False}
    entry = {"schema": SCHEMA, "task": "demo", "key": key, "profile": "p", "created": 1.5, "built_in": 2.0,
             "files": files, "trees": {}}
    store.save_entry(entry)
    return entry


def remote_for(url: str, **kw: Any) -> rc.Remote:
    base, auth = rc.parse_url(url, "artifact_remote")
    return rc.Remote(rc.RemoteSettings(url=base, auth=auth, **kw))


@pytest.fixture
def server():
    rc._DOWN.clear()
    with hostilecache.serve() as srv:
        yield srv
    rc._DOWN.clear()


@pytest.fixture
def pushed(tmp_path, server) -> tuple[dict[str, Any], Store]:
    """An entry pushed to the hostile server by a writer, and an empty store of a reader."""
    src = Store(tmp_path / "writer")
    entry = make_entry(src)
    remote_for(server.url).push(entry, src)
    return entry, Store(tmp_path / "reader")


def blob_path(entry: dict[str, Any], rel: str) -> str:
    sha = entry["files"][rel]["sha256"]
    return f"/blobs/{sha[:2]}/{sha}"


def test_push_writes_blobs_first_and_the_entry_last_and_pull_gets_a_verified_copy(server, pushed):
    entry, reader = pushed
    puts = [p for m, p, _a in server.state.log if m == "PUT"]
    assert puts[-1] == f"/entries/{KEY}.json" and len(puts) == 3
    assert all(p.startswith("/blobs/") for p in puts[:-1])
    r = remote_for(server.url)
    got = r.pull(KEY, reader)
    assert got == entry
    assert reader.load(KEY) == entry
    for meta in entry["files"].values():
        assert reader.blob(meta["sha256"]).read_bytes()  # present locally
    assert r.traffic.blobs_down == 2 and r.traffic.down > 3000


def test_a_second_push_uploads_only_the_entry(tmp_path, server, pushed):
    entry, _ = pushed
    server.state.log.clear()
    remote_for(server.url).push(entry, Store(tmp_path / "writer"))
    assert [m for m, _p, _a in server.state.log if m == "PUT"] == ["PUT"]


def test_a_miss_is_none(server, tmp_path):
    assert remote_for(server.url).pull(OTHER, Store(tmp_path / "s")) is None


@pytest.mark.parametrize("fault, said", [
    (hostilecache.Fault(flip=True), "does not match its sha256"),
    (hostilecache.Fault(cut=100), "cut off"),
    (hostilecache.Fault(extra=b"more"), "longer than"),
    (hostilecache.Fault(body=b"x" * 3000), "does not match its sha256"),
    (hostilecache.Fault(body=b"short"), "truncated"),
    (hostilecache.Fault(status=404), "missing on the server"),
])
def test_a_bad_blob_is_refused_and_the_local_store_gets_no_entry(server, pushed, fault, said):
    entry, reader = pushed
    server.state.faults[blob_path(entry, "out/one.bin")] = fault
    r = remote_for(server.url)
    with pytest.raises(rc.Refused, match=said):
        r.pull(KEY, reader)
    assert reader.load(KEY) is None
    assert not reader.blob(entry["files"]["out/one.bin"]["sha256"]).exists()
    assert not list(reader.tmp.iterdir())
    # the writer that rebuilds re-uploads the blob the server served wrong, though a HEAD says it is there
    server.state.faults.clear()
    server.state.files[blob_path(entry, "out/one.bin")] = b"x" * 3000
    server.state.log.clear()
    r.push(entry, Store(reader.root.parent / "writer"))
    assert ("PUT", blob_path(entry, "out/one.bin")) in [(m, p) for m, p, _a in server.state.log]
    assert remote_for(server.url).pull(KEY, reader) == entry


@pytest.mark.parametrize("body, said", [
    (b'{"schema": 1, "key": "', "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (None, "records key"),  # the entry of another key
    (b'{"schema": 1, "key": "' + KEY.encode() + b'", "task": "x", "files": {"../../etc/passwd": '
     b'{"sha256": "' + b"c" * 64 + b'", "size": 1, "mode": 420}}}', "unsafe path"),
    (b"{" + b" " * (rc.MAX_ENTRY_BYTES + 10) + b"}", "larger than"),
])
def test_a_wrong_or_truncated_entry_is_refused(server, pushed, body, said):
    entry, reader = pushed
    if body is None:
        body = json.dumps({**entry, "key": OTHER}).encode()
    server.state.faults[f"/entries/{KEY}.json"] = hostilecache.Fault(body=body)
    with pytest.raises(rc.Refused, match=said):
        remote_for(server.url).pull(KEY, reader)
    assert reader.load(KEY) is None


def test_an_entry_of_another_stage_is_refused(server, pushed):
    _, reader = pushed
    with pytest.raises(rc.Refused, match="for stage 'demo', not kernel"):
        remote_for(server.url).pull(KEY, reader, task="kernel")
    assert reader.load(KEY) is None
    assert remote_for(server.url).pull(KEY, reader, task="demo") is not None


def test_a_server_error_is_a_remote_error_and_leaves_the_server_usable(server, pushed):
    _, reader = pushed
    server.state.faults["*"] = hostilecache.Fault(status=500)
    r = remote_for(server.url)
    with pytest.raises(rc.RemoteError, match="answered 500"):
        r.pull(KEY, reader)
    assert not r.down
    server.state.faults.clear()
    assert remote_for(server.url).pull(KEY, reader) is not None


def test_a_server_that_is_down_is_asked_once_per_run(tmp_path):
    rc._DOWN.clear()
    url = f"http://127.0.0.1:{free_port()}"
    r = remote_for(url)
    with pytest.raises(rc.RemoteError, match="cannot be reached"):
        r.pull(KEY, Store(tmp_path / "s"))
    assert r.down
    t = time.monotonic()
    with pytest.raises(rc.RemoteError, match="found down earlier"):
        remote_for(url).pull(KEY, Store(tmp_path / "s"))
    assert time.monotonic() - t < 0.5
    rc._DOWN.clear()


def test_read_only_never_writes(server, tmp_path):
    src = Store(tmp_path / "w")
    entry = make_entry(src)
    with pytest.raises(rc.RemoteError, match="read-only"):
        remote_for(server.url, mode=rc.READ_ONLY).push(entry, src)
    assert server.methods() == []


def test_credentials_go_as_basic_auth_and_are_never_printed(tmp_path):
    rc._DOWN.clear()
    password = "hunter2-s3cret"
    url = f"http://ci:{password}@127.0.0.1:{free_port()}/cache/"
    settings = rc.settings_from({"artifact_remote": url}, {})
    assert settings is not None
    assert settings.url.endswith("/cache") and "@" not in settings.url and settings.auth == ("ci", password)
    assert password not in settings.shown and settings.shown.startswith("http://***@127.0.0.1:")
    with pytest.raises(rc.RemoteError) as err:
        rc.Remote(settings).pull(KEY, Store(tmp_path / "s"))
    assert password not in str(err.value) and "ci:" not in str(err.value)
    assert rc.redact(f"GET {url} failed") == f"GET http://***@127.0.0.1:{url.split(':')[-1]} failed"
    assert password not in rc.redact(f"oops {password}", url)
    with pytest.raises(TinyukiError) as bad:
        rc.settings_from({}, {"TINYUKI_ARTIFACT_REMOTE": f"ftp://u:{password}@host/x"})
    assert password not in str(bad.value) and "TINYUKI_ARTIFACT_REMOTE" in str(bad.value)
    rc._DOWN.clear()


def test_basic_auth_reaches_the_server(server, tmp_path):
    src = Store(tmp_path / "w")
    entry = make_entry(src)
    remote_for(server.url.replace("//", "//ci:pw@")).push(entry, src)
    assert {a for _m, _p, a in server.state.log} == {"Basic Y2k6cHc="}


def test_settings_variables_win_over_the_environment_and_bad_values_are_clear(tmp_path):
    env = {"TINYUKI_ARTIFACT_REMOTE": "http://env.example/c", "TINYUKI_ARTIFACT_REMOTE_MODE": "ro"}
    assert rc.settings_from({}, {}) is None
    assert rc.settings_from({"artifact_remote": " "}, {}) is None
    assert rc.settings_from({"artifact_remote": "off"}, env) is None
    s = rc.settings_from({"artifact_remote": "https://var.example:8443/x"}, env)
    assert s is not None and s.url == "https://var.example:8443/x" and s.read_only
    s = rc.settings_from({"artifact_remote_mode": "rw"}, env)
    assert s is not None and s.url == "http://env.example/c" and not s.read_only
    with pytest.raises(TinyukiError, match="is not a remote cache mode"):
        rc.settings_from({"artifact_remote_mode": "sometimes"}, env)
    with pytest.raises(TinyukiError, match="no such file"):
        rc.settings_from({"artifact_trusted_keys": str(tmp_path / "nope")}, env)
    bad = tmp_path / "trusted"
    bad.write_text("not a key\n")
    with pytest.raises(TinyukiError, match="not an ssh public key line"):
        rc.settings_from({"artifact_trusted_keys": str(bad)}, env)


# ---------------------------------------------------------------- signatures

def keypair(tmp: Path, name: str) -> tuple[Path, Path]:
    if shutil.which("ssh-keygen") is None:
        pytest.fail("ssh-keygen (openssh-client) is needed to test signed entries")
    key = tmp / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key, key.with_suffix(".pub")


def test_signed_entries_verify_and_everything_else_is_refused(tmp_path, server):
    team_key, team_pub = keypair(tmp_path, "team")
    _other_key, other_pub = keypair(tmp_path, "other")
    src = Store(tmp_path / "w")
    entry = make_entry(src)
    remote_for(server.url, signing_key=team_key).push(entry, src)
    stored = json.loads(server.state.files[f"/entries/{KEY}.json"])
    assert stored["signature"]["format"] == "ssh" and "BEGIN SSH SIGNATURE" in stored["signature"]["signature"]

    # a reader trusting the team's key takes it
    got = remote_for(server.url, trusted_keys=team_pub).pull(KEY, Store(tmp_path / "r1"))
    assert got is not None and got["files"] == entry["files"]
    # one trusting another key refuses it
    with pytest.raises(rc.Refused, match="not by a trusted key"):
        remote_for(server.url, trusted_keys=other_pub).pull(KEY, Store(tmp_path / "r2"))
    # a signed entry changed afterwards (a blob swapped for another) is refused
    forged = json.loads(json.dumps(stored))
    forged["files"]["two.txt"]["sha256"] = "d" * 64
    server.state.faults[f"/entries/{KEY}.json"] = hostilecache.Fault(body=json.dumps(forged).encode())
    with pytest.raises(rc.Refused, match="not by a trusted key"):
        remote_for(server.url, trusted_keys=team_pub).pull(KEY, Store(tmp_path / "r3"))
    # an unsigned entry is refused when keys are trusted, taken when none are
    server.state.faults[f"/entries/{KEY}.json"] = hostilecache.Fault(body=json.dumps(entry).encode())
    with pytest.raises(rc.Refused, match="not signed"):
        remote_for(server.url, trusted_keys=team_pub).pull(KEY, Store(tmp_path / "r4"))
    assert remote_for(server.url).pull(KEY, Store(tmp_path / "r5")) is not None
    # a signature of the same bytes in another namespace (a git commit signature) does not count
    data = tmp_path / "payload"
    data.write_bytes(rc.signed_bytes(entry))
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(team_key), "-n", "git", str(data)], check=True)
    wrong_ns = {**entry, "signature": {"format": "ssh", "signature": (tmp_path / "payload.sig").read_text()}}
    server.state.faults[f"/entries/{KEY}.json"] = hostilecache.Fault(body=json.dumps(wrong_ns).encode())
    with pytest.raises(rc.Refused, match="not by a trusted key"):
        remote_for(server.url, trusted_keys=team_pub).pull(KEY, Store(tmp_path / "r6"))
