"""A real nginx with WebDAV PUT on 127.0.0.1 for the tests: the remote artifact cache a team would run.

A test that needs it fails (never skips) when nginx is missing: the remote
cache's promises are only proven against a real server.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import webdav
from tests.helpers.daemons import can_connect, running


@dataclass(frozen=True)
class Nginx:
    root: Path  # what it serves: entries/ and blobs/ as a remote cache holds them
    port: int
    prefix: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def log(self) -> str:
        return (self.prefix / "access.log").read_text(errors="replace") if (self.prefix / "access.log").exists() \
            else ""


def require() -> None:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.fail(f"nginx is needed for this test: {webdav.HINT}")


@contextmanager
def serve(tmp: Path, users: dict[str, str] | None = None) -> Iterator[Nginx]:
    """nginx serving tmp/remote on a free port until the block ends; with `users`, writes need basic auth."""
    require()
    prefix, root = tmp / "nginx", tmp / "remote"
    cmd, port = webdav.prepare(prefix, root, users)
    with running(cmd, prefix / "stdout.log", lambda: can_connect(port)):
        yield Nginx(root=root, port=port, prefix=prefix)
