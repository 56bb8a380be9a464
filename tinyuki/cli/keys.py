"""`doit keys`: test Secure Boot keys (PK, KEK, db) and an OVMF variable store with them enrolled.

For trying Secure Boot end to end without touching real keys: the keys land
in secureboot/ (git-ignored, private keys mode 0600; keys_dir=DIR for another
place), existing keys are never overwritten, and the store
secureboot/OVMF_VARS_4M.enrolled.fd (Secure Boot on, these keys enrolled) is
what `doit boot secureboot=1` boots with. Sign with the db key by adding
[sign] key = "secureboot/db.key", cert = "secureboot/db.crt" to the profile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from doit import get_var

from tinyuki import secureboot
from tinyuki.cli import params
from tinyuki.cli.actions import action
from tinyuki.config.context import Context


def keys_dir(ctx: Context) -> Path:
    """keys_dir= on the command line (relative to the working directory), else secureboot/ in the project."""
    value = get_var("keys_dir")
    return Path(value).absolute() if value else ctx.root / secureboot.KEYS_DIR


def make(ctx: Context, where: Path) -> Path:
    """Make the keys that are missing and (re)write the enrolled store; returns the store's path."""
    log = ctx.paths.logs / "keys.log"
    made = secureboot.make_keys(where, log=log)
    kept = [n for n in secureboot.KEY_NAMES if n not in made]
    if made:
        print(f"keys: made {', '.join(made)} in {where} (private keys mode 0600)")
    if kept:
        print(f"keys: kept the existing {', '.join(kept)} in {where} (never overwritten)")
    store = secureboot.enroll(where, where / secureboot.ENROLLED_VARS, log=log)
    print(f"keys: {store}: OVMF variables with PK, KEK and db enrolled, Secure Boot on")
    try:
        shown = where.relative_to(ctx.root)
    except ValueError:
        shown = where
    print("keys: to sign the UKI with the db key, add to the profile:\n"
          f'[sign]\nkey = "{shown}/db.key"\ncert = "{shown}/db.crt"\n'
          "keys: then `doit` builds tinyuki.signed.efi and `doit boot secureboot=1` boots it with Secure Boot on")
    return store


def task(ctx: Context) -> dict[str, Any]:
    @action
    def run(keys_dir_param: str) -> None:
        params.adopt({"keys_dir": keys_dir_param})
        make(ctx, keys_dir(ctx))

    return {
        "basename": "keys",
        "actions": [run],
        "doc": "Make test Secure Boot keys (PK, KEK, db; never overwritten) and an OVMF store with them enrolled.",
        "uptodate": [False],
        "verbosity": 2,
        "params": [{**params.param("keys_dir", "where the keys and the enrolled store go (default secureboot/)"),
                    "name": "keys_dir_param"}],
    }
