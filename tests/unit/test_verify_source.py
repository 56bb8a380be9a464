"""fetch + verify against a local mirror: every way a tarball can fail to be trusted, and the ways it passes.

Each rejection asserts its message and that the verified store holds nothing.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.helpers import gpgkeys, tarballs
from tests.helpers.httpserver import Route, serve
from tests.helpers.profiles import context, store_files
from tests.helpers.stages import out
from tinyuki.cli import pin
from tinyuki.errors import TinyukiError
from tinyuki.source import trust
from tinyuki.tasks import fetch, verify
from tinyuki.util.fs import read_json

TAR = tarballs.tar_bytes()
SHA = hashlib.sha256(TAR).hexdigest()
NAME = "linux-9.9.tar.xz"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    base = tmp_path_factory.mktemp("keys")
    made = {n: gpgkeys.make_key(base, n, expired=n == "expired", revoked=n == "revoked")
            for n in ("trusted", "stranger", "expired", "revoked")}
    yield made
    gpgkeys.stop_agents(base)


@pytest.fixture
def server():
    with serve() as s:
        yield s


def signed_source(server, tmp_path, keys, signer="trusted", body=TAR, over="uncompressed", pin=SHA,
                  keyrings=("trusted",), sig_bytes=None, past=False):
    """Publish body and a signature by `signer`, return the [source] table of a profile using them."""
    server.add(f"/{NAME}", Route(body))
    if sig_bytes is None:
        signed = tarballs.uncompressed(body) if over == "uncompressed" else body
        sig_bytes = keys[signer].sign(signed, tmp_path / "sig", past=past).read_bytes()
    server.add(f"/{NAME[:-3]}.sign", Route(sig_bytes))
    return {
        "urls": [server.url(f"/{NAME}")],
        "sha256": pin,
        "signature": server.url(f"/{NAME[:-3]}.sign"),
        "signature_over": "uncompressed",
        "signers": [keys["trusted"].fingerprint],
        "keyrings": [str(keys[k].public) for k in keyrings],
        "retries": 1,
        "timeout": 5,
    }


def run_stages(ctx):
    fetch.fetch(ctx)
    verify.verify(ctx)
    return read_json(out(ctx, "source.json"))


def rejected(ctx, *fragments):
    with pytest.raises(TinyukiError) as e:
        run_stages(ctx)
    for frag in fragments:
        assert frag in e.value.message, e.value.message
    assert store_files(ctx) == []
    assert not out(ctx, "source.json").exists()
    assert [p for p in ctx.paths.incoming.glob(f"*{NAME}")] == []  # the rejected download is gone
    return e.value


def test_good_signature_and_pin_store_the_tarball(server, tmp_path, keys):
    ctx = context(tmp_path, signed_source(server, tmp_path, keys))
    src = run_stages(ctx)
    fpr = keys["trusted"].fingerprint
    assert src["sha256"] == SHA and src["filename"] == NAME
    assert src["trust"] == ["sha256 pin", f"signature by {fpr}"]
    assert src["path"] == str(ctx.paths.stored(SHA)) and store_files(ctx) == [ctx.paths.stored(SHA)]
    assert ctx.paths.stored(SHA).read_bytes() == TAR
    fetched = read_json(out(ctx, "fetched.json"))
    assert fetched["url"] == server.url(f"/{NAME}") and fetched["signature"] and fetched["sha256sums"] is None


def test_second_build_dir_does_not_download_again(server, tmp_path, keys):
    source = signed_source(server, tmp_path, keys)
    run_stages(context(tmp_path, source))
    route = server.server.routes[f"/{NAME}"]
    before = len(route.requests)
    ctx2 = context(tmp_path, source, name="other", build="build2")
    src = run_stages(ctx2)
    assert len(route.requests) == before and src["sha256"] == SHA


def test_wrong_bytes_fail_the_pin(server, tmp_path, keys):
    ctx = context(tmp_path, signed_source(server, tmp_path, keys, pin="0" * 64))
    err = rejected(ctx, "sha256 mismatch", "expected " + "0" * 64, f"got      {SHA}")
    assert "doit pin" in (err.hint or "")


def test_good_signature_by_untrusted_key(server, tmp_path, keys):
    ctx = context(tmp_path, signed_source(server, tmp_path, keys, signer="stranger",
                                          keyrings=("trusted", "stranger")))
    rejected(ctx, f"good signature by {keys['stranger'].fingerprint}", "not one of the trusted signers")


def test_signature_by_key_not_in_keyrings(server, tmp_path, keys):
    ctx = context(tmp_path, signed_source(server, tmp_path, keys, signer="stranger"))
    rejected(ctx, "not in the profile's keyrings")


def test_signature_over_the_compressed_file_is_bad(server, tmp_path, keys):
    ctx = context(tmp_path, signed_source(server, tmp_path, keys, over="file"))
    rejected(ctx, "BAD signature")


def test_signature_over_different_data_is_bad(server, tmp_path, keys):
    other = tarballs.uncompressed(tarballs.tar_bytes(files={"README": b"something else\n"}))
    sig = keys["trusted"].sign(other, tmp_path / "other.sig").read_bytes()
    ctx = context(tmp_path, signed_source(server, tmp_path, keys, sig_bytes=sig))
    rejected(ctx, "BAD signature")


def test_expired_key(server, tmp_path, keys):
    source = signed_source(server, tmp_path, keys, signer="expired", keyrings=("expired",), past=True)
    source["signers"] = [keys["expired"].fingerprint]
    rejected(context(tmp_path, source), "has EXPIRED")


def test_revoked_key(server, tmp_path, keys):
    source = signed_source(server, tmp_path, keys, signer="revoked", keyrings=("revoked",))
    source["signers"] = [keys["revoked"].fingerprint]
    rejected(context(tmp_path, source), "REVOKED")


def test_garbled_signature(server, tmp_path, keys):
    ctx = context(tmp_path, signed_source(server, tmp_path, keys, sig_bytes=b"this is not a signature\n"))
    rejected(ctx, "no OpenPGP signature found")


def test_missing_signature_file(server, tmp_path, keys):
    source = signed_source(server, tmp_path, keys)
    source["signature"] = server.url("/nowhere.tar.sign")
    ctx = context(tmp_path, source)
    with pytest.raises(TinyukiError) as e:
        run_stages(ctx)
    assert "signature file" in e.value.message and "HTTP 404" in e.value.message
    assert store_files(ctx) == []


def test_signature_over_file_when_profile_says_so(server, tmp_path, keys):
    source = signed_source(server, tmp_path, keys, over="file")
    source["signature_over"] = "file"
    assert run_stages(context(tmp_path, source))["sha256"] == SHA


# ---------------------------------------------------------------- sha256sums.asc


def sums_source(server, tmp_path, keys, listing: bytes, signer="trusted"):
    server.add(f"/{NAME}", Route(TAR))
    server.add("/sha256sums.asc", Route(keys[signer].clearsign(listing)))
    return {
        "urls": [server.url(f"/{NAME}")], "sha256": SHA,
        "sha256sums": server.url("/sha256sums.asc"),
        "sha256sums_signers": [keys["trusted"].fingerprint],
        "sha256sums_keyrings": [str(keys["trusted"].public), str(keys["stranger"].public)],
        "retries": 1, "timeout": 5,
    }


def test_sha256sums_listing_the_tarball(server, tmp_path, keys):
    listing = f"{'1' * 64}  linux-9.8.tar.xz\n{SHA}  {NAME}\n".encode()
    src = run_stages(context(tmp_path, sums_source(server, tmp_path, keys, listing)))
    assert src["trust"] == ["sha256 pin", f"sha256sums.asc by {keys['trusted'].fingerprint}"]


def test_sha256sums_with_another_hash(server, tmp_path, keys):
    listing = f"{'2' * 64}  {NAME}\n".encode()
    ctx = context(tmp_path, sums_source(server, tmp_path, keys, listing))
    rejected(ctx, "sha256sums.asc lists " + "2" * 64)


def test_sha256sums_not_listing_the_tarball(server, tmp_path, keys):
    ctx = context(tmp_path, sums_source(server, tmp_path, keys, f"{SHA}  linux-1.0.tar.xz\n".encode()))
    with pytest.raises(TinyukiError) as e:
        run_stages(ctx)
    assert f"{NAME} is not listed" in e.value.message and store_files(ctx) == []


def test_sha256sums_signed_by_untrusted_key(server, tmp_path, keys):
    ctx = context(tmp_path, sums_source(server, tmp_path, keys, f"{SHA}  {NAME}\n".encode(), signer="stranger"))
    with pytest.raises(TinyukiError) as e:
        run_stages(ctx)
    assert "not one of the trusted signers" in e.value.message and store_files(ctx) == []


# ---------------------------------------------------------------- trust on first use


def test_first_use_is_recorded_then_required(tmp_path, keys):
    """Without a pinned hash, the first verified tarball is recorded; a different one later is refused,
    even when it is validly signed, until it is accepted on purpose."""
    f = tarballs.write(tmp_path / "src" / NAME, TAR)
    sig = keys["trusted"].sign(tarballs.uncompressed(TAR), tmp_path / "src" / "linux-9.9.tar.sign")
    ctx = context(tmp_path, {"urls": [str(f)], "signature": f"file://{sig}",
                             "signers": [keys["trusted"].fingerprint], "keyrings": [str(keys["trusted"].public)]})
    assert ctx.profile.source.sha256 is None
    src = run_stages(ctx)
    assert src["trust"] == [f"signature by {keys['trusted'].fingerprint}", "recorded on first use"]
    assert store_files(ctx) == [ctx.paths.stored(SHA)] and f.read_bytes() == TAR  # a local file is copied
    assert read_json(trust.lock_path(ctx.paths.locks, ctx.profile.source.urls[0]))["sha256"] == SHA
    changed = tarballs.tar_bytes(files={"README": b"updated\n"})
    f.write_bytes(changed)
    keys["trusted"].sign(tarballs.uncompressed(changed), sig)
    with pytest.raises(TinyukiError) as e:
        run_stages(ctx)
    assert "changed since it was first used" in e.value.message and SHA in e.value.message
    assert "pin accept=1" in (e.value.hint or "")
    pin.pin(ctx, accept=False)
    # showing is not accepting
    assert read_json(trust.lock_path(ctx.paths.locks, ctx.profile.source.urls[0]))["sha256"] == SHA
    pin.pin(ctx, accept=True)
    new = hashlib.sha256(changed).hexdigest()
    assert read_json(trust.lock_path(ctx.paths.locks, ctx.profile.source.urls[0]))["sha256"] == new
    assert run_stages(ctx)["sha256"] == new


def test_pin_prints_the_profile_line(server, tmp_path, keys, capsys):
    source = signed_source(server, tmp_path, keys, pin="f" * 64)
    ctx = context(tmp_path, source)
    fetch.fetch(ctx)
    capsys.readouterr()
    pin.pin(ctx, accept=False)
    out = capsys.readouterr().out
    assert f'sha256 = "{SHA}"' in out and "f" * 64 in out
    with pytest.raises(TinyukiError):
        pin.pin(ctx, accept=True)  # a hash pinned in the profile is changed by editing the profile
