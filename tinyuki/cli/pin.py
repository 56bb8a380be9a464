"""`doit pin`: show the fetched source's sha256, and on request record it as trusted.

For a source without a pinned hash (Debian's tarball), the hash recorded on
first use must hold on every later build; after a legitimate change (a
security update of the package) `doit pin accept=1` records the new one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from doit import get_var

from tinyuki.cli import params
from tinyuki.cli.actions import action
from tinyuki.config.context import Context
from tinyuki.errors import die
from tinyuki.records import Fetched
from tinyuki.source import download, trust
from tinyuki.util.flags import yes_no


def pin(ctx: Context, accept: bool) -> None:
    src = ctx.profile.source
    got = Fetched.load(ctx.paths.build)
    sha = got.sha256
    name = download.basename(got.url)
    size = Path(got.path).stat().st_size if Path(got.path).is_file() else None
    size_line = f"\nsize = {size}" if size is not None else ""  # a pinned size also caps the download
    print(f"{name}: sha256 {sha} (from {got.url})")
    if src.sha256:
        if src.sha256 == sha:
            print(f"pin: matches the sha256 pinned in {ctx.profile.path}")
            return
        print(f"pin: {ctx.profile.path} pins {src.sha256}\n"
              f"pin: to trust the fetched file instead, put this line under [source] in that file:\n"
              f'sha256 = "{sha}"{size_line}')
        if accept:
            raise die("this profile pins its hash in the profile itself; accept=1 does not edit profiles",
                      f"edit {ctx.profile.path} as shown above (and review why the hash changed)")
        return
    locks, url = ctx.paths.locks, src.urls[0]
    lock = trust.read_lock(locks, url)
    old = lock["sha256"] if lock else None
    if old == sha:
        print(f"pin: matches the hash recorded on first use ({trust.lock_path(locks, url)})")
        return
    print(f"pin: recorded {old or 'nothing yet'}"
          + (f" ({lock.get('package_version') or ''}, {lock.get('recorded')})" if lock else "")
          + f"\npin: now      {sha}\n"
          f"pin: or pin it in the profile, under [source]:\n"
          f'sha256 = "{sha}"{size_line}')
    if not accept:
        print(f"pin: nothing recorded; to accept the new hash run `doit profile={ctx.profile.path} pin accept=1`")
        return
    version = trust.dpkg_check(Path(got.path), src.package) if src.package else None
    trust.write_lock(locks, url, sha, src.package, version)
    print(f"pin: recorded {sha} in {trust.lock_path(locks, url)}")


def task(ctx: Context) -> dict[str, Any]:
    @action
    def run(accept: str) -> None:
        params.adopt({"accept": accept})
        pin(ctx, yes_no(get_var("accept"), "accept"))

    return {
        "basename": "pin",
        "actions": [run],
        "doc": "Print the sha256 of the profile's source, or record it as trusted (pin accept=1).",
        "task_dep": ["fetch"],
        "uptodate": [False],
        "verbosity": 2,
        "params": [params.param("accept", "1: record a changed hash of an unpinned source as trusted")],
    }

