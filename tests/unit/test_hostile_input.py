"""Inputs that used to end in a Python traceback get one error with a hint instead.

Profiles with odd urls, huge numbers or bytes that are not UTF-8; build and
cache dirs that are files or cannot be written; a full disk while fetching
and verifying.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.helpers import tarballs
from tests.helpers.profiles import context
from tinyuki.config import context as ctxmod
from tinyuki.config.context import make_context
from tinyuki.config.profile import load_profile
from tinyuki.errors import TinyukiError
from tinyuki.source import download
from tinyuki.tasks import fetch as fetch_stage
from tinyuki.tasks import verify as verify_stage

ROOT = Path(__file__).resolve().parents[2]
SHA = "362d07fe4938c415ce651aefee063a5c4151109b39c97be039bbaa8312ffc0e2"


def profile_text(url: str = "https://example.org/linux-6.1.183.tar.xz", extra: str = "") -> str:
    return f'[source]\nurls = ["{url}"]\nsha256 = "{SHA}"\n{extra}\n[kernel]\nfragments = ["base"]\n'


def refused(tmp_path: Path, text: str | bytes) -> TinyukiError:
    path = tmp_path / "p.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(TinyukiError) as e:
        load_profile(str(path), ROOT)
    assert e.value.hint
    return e.value


@pytest.mark.parametrize("url", [
    "https://example.org/dir/linux%2F..%2F..%2Fescape.tar.xz",  # a slash inside the file name
    "https://example.org/linux-6.1%00.tar.xz",  # a NUL byte
    "https://example.org/linux%0A6.1.tar.xz",  # a newline (a control character)
    "https://example.org/dir/",  # no file name at all
    "https://example.org/dir/%2E%2E",  # the file name ".."
    "file:///usr/src/linux%00.tar.xz",
])
def test_a_url_whose_file_name_is_not_a_plain_name_is_refused(tmp_path, url):
    err = refused(tmp_path, profile_text(url))
    assert "[source] urls[0]" in err.message and "file name" in err.message


def test_a_url_with_an_encoded_slash_in_a_directory_is_fine(tmp_path):
    (tmp_path / "p.toml").write_text(profile_text("https://example.org/a%2Fb/linux-6.1.183.tar.xz"))
    prof = load_profile(str(tmp_path / "p.toml"), ROOT)
    assert download.basename(prof.source.urls[0]) == "linux-6.1.183.tar.xz"


def test_basename_never_returns_a_path():
    """Even a url that bypassed the profile (a signature url from elsewhere) gets a safe file name."""
    for url in ("https://x.org/a%2F..%2Fb", "https://x.org/%00", "https://x.org/..", "https://x.org/%2E%2E"):
        name = download.basename(url)
        assert "/" not in name and "\0" not in name and name not in ("", ".", "..")


@pytest.mark.parametrize("extra,key", [
    ("timeout = 9223372036854775807", "timeout"),
    ("retries = 100000000", "retries"),
    ("deadline = 9223372036854775807", "deadline"),
    ("max_size = 9223372036854775807", "max_size"),
])
def test_huge_numbers_are_refused(tmp_path, extra, key):
    err = refused(tmp_path, profile_text(extra=extra))
    assert f"[source] {key}" in err.message and "at most" in err.message


def test_a_huge_boot_timeout_is_refused(tmp_path):
    err = refused(tmp_path, profile_text() + "\n[boot]\ntimeout = 9223372036854775807\n")
    assert "[boot] timeout" in err.message and "at most" in err.message


def test_a_profile_that_is_not_utf8_is_refused(tmp_path):
    err = refused(tmp_path, profile_text().encode() + b"# caf\xe9\n")
    assert "UTF-8" in err.message and "byte" in err.message


def test_a_build_dir_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    for build in (f, f / "sub"):
        ctx = make_context("debian", str(build), str(tmp_path / "cache"))
        with pytest.raises(TinyukiError) as e:
            ctxmod.prepare_dirs(ctx)
        assert "build_dir" in e.value.message and str(f) in e.value.message and "not a directory" in e.value.message
        assert "build_dir=" in (e.value.hint or "")


def test_a_cache_dir_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    ctx = make_context("debian", str(tmp_path / "build"), str(f))
    with pytest.raises(TinyukiError) as e:
        ctxmod.prepare_dirs(ctx)
    assert "cache_dir" in e.value.message and "not a directory" in e.value.message
    assert "cache_dir=" in (e.value.hint or "")


def test_a_cache_dir_that_cannot_be_written_is_refused(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    real = os.open

    def read_only(path, flags, *a, **kw):
        if str(path).startswith(str(cache)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", read_only)
    ctx = make_context("debian", str(tmp_path / "build"), str(cache))
    with pytest.raises(TinyukiError) as e:
        ctxmod.prepare_dirs(ctx)
    assert "cache_dir" in e.value.message and "cannot be written" in e.value.message
    assert (tmp_path / "build").is_dir()


def test_prepare_dirs_makes_both(tmp_path):
    ctx = make_context("debian", str(tmp_path / "b" / "uild"), str(tmp_path / "c" / "ache"))
    ctxmod.prepare_dirs(ctx)
    assert ctx.paths.build.is_dir() and ctx.paths.cache.is_dir()
    assert sorted(p.name for p in ctx.paths.cache.iterdir()) == []


# ---------------------------------------------------------------- a full disk


class _FullDisk:
    """A file whose writes fail as on a full disk (everything else passes through)."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def test_a_full_disk_while_fetching_is_one_error(tmp_path, monkeypatch):
    from tests.helpers.httpserver import Route, serve

    real_open = open

    def opener(path, mode="r", *a, **kw):
        f = real_open(path, mode, *a, **kw)
        return _FullDisk(f) if str(path).endswith(".part") and "b" in mode and mode != "rb" else f

    monkeypatch.setattr(download, "open", opener, raising=False)
    body = tarballs.tar_bytes()
    with serve() as srv:
        url = srv.add("/linux-9.9.tar.xz", Route(body))
        with pytest.raises(TinyukiError) as e:
            download.fetch([url], tmp_path / "incoming", retries=3, timeout=5, backoff=0.01, progress=False)
    assert "no space left" in e.value.message and "free some space" in (e.value.hint or "")


def test_a_full_disk_while_storing_the_verified_tarball_is_one_error(tmp_path, monkeypatch):
    tar = tarballs.write(tmp_path / "src" / "linux-9.9.tar.xz", tarballs.tar_bytes())
    import hashlib

    sha = hashlib.sha256(tar.read_bytes()).hexdigest()
    ctx = context(tmp_path, {"urls": [str(tar)], "sha256": sha})
    fetch_stage.fetch(ctx)

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(verify_stage, "atomic_copy", full)
    with pytest.raises(TinyukiError) as e:
        verify_stage.verify(ctx)
    assert "no space left" in e.value.message and "free some space" in (e.value.hint or "")


# ---------------------------------------------------------------- the fetch stage's limits come from the profile


def test_the_fetch_stage_caps_downloads_by_the_pinned_size_and_max_size(tmp_path):
    from tests.helpers.httpserver import Route, serve

    body = tarballs.tar_bytes(files={**tarballs.FILES, "big": os.urandom(1_200_000)})
    import hashlib

    sha = hashlib.sha256(body).hexdigest()
    with serve() as srv:
        url = srv.add("/linux-9.9.tar.xz", Route(body))
        pinned = context(tmp_path, {"urls": [url], "sha256": sha, "size": len(body) - 1, "retries": 1},
                         name="pinned", build="b1")
        with pytest.raises(TinyukiError) as e:
            fetch_stage.fetch(pinned)
        assert f"{len(body) - 1} bytes pinned" in e.value.message
        capped = context(tmp_path, {"urls": [url], "sha256": sha, "max_size": 1, "retries": 1},
                         name="capped", build="b2")
        with pytest.raises(TinyukiError) as e:
            fetch_stage.fetch(capped)
        assert "larger than the limit of 1048576 bytes" in e.value.message and "max_size" in (e.value.hint or "")
        exact = context(tmp_path, {"urls": [url], "sha256": sha, "size": len(body), "retries": 1},
                        name="exact", build="b3")
        fetch_stage.fetch(exact)


def test_a_signature_file_is_capped_small(tmp_path):
    from tests.helpers.httpserver import Route, serve

    body = tarballs.tar_bytes()
    with serve() as srv:
        url = srv.add("/linux-9.9.tar.xz", Route(body))
        sig = srv.add("/linux-9.9.tar.sign", Route(b"x" * (fetch_stage.SIGNATURE_MAX + 1)))
        key = ROOT / "configs" / "keys" / "gregkh.asc"
        fpr = "647F28654894E3BD457199BE38DBBDC86092693E"
        ctx = context(tmp_path, {"urls": [url], "signature": sig, "signers": [fpr],
                                 "keyrings": [str(key)], "retries": 1})
        with pytest.raises(TinyukiError) as e:
            fetch_stage.fetch(ctx)
    assert "signature file" in e.value.message and "larger than" in e.value.message


def test_pin_prints_the_size_to_pin_with_the_hash(tmp_path, capsys):
    from tinyuki.cli import pin

    tar = tarballs.write(tmp_path / "src" / "linux-9.9.tar.xz", tarballs.tar_bytes())
    ctx = context(tmp_path, {"urls": [str(tar)], "sha256": "f" * 64})
    fetch_stage.fetch(ctx)
    capsys.readouterr()
    pin.pin(ctx, accept=False)
    assert f"\nsize = {tar.stat().st_size}\n" in capsys.readouterr().out


def test_any_stage_hitting_a_full_disk_fails_with_a_message_not_a_traceback():
    from tinyuki.cli.actions import action

    def stage():
        raise OSError(errno.ENOSPC, "No space left on device", "/some/build/kbuild/vmlinux.o")

    failure = action(stage)()
    text = failure.get_msg()
    assert "no space left on the device" in text and "/some/build/kbuild/vmlinux.o" in text and "hint:" in text
    assert not failure.traceback
