"""Profiles for tests: TOML written to a tmp dir with absolute paths, loaded as a real Context."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinyuki.config.context import Context, make_context

# The smallest valid [source] and [kernel]: a pinned url that is never fetched, and the base fragment.
# Tests append the sections they are about (as TOML text, with str.format placeholders doubled).
MINIMAL = """
[source]
urls = ["https://example.org/linux-6.1.tar.xz"]
sha256 = "{zeros}"

[kernel]
fragments = ["base"]
""".replace("{zeros}", "0" * 64)


def _toml(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, Path):
        v = str(v)
    return json.dumps(v)  # strings, ints and booleans are spelled the same in TOML


def write_profile(path: Path, source: dict[str, Any], kernel: dict[str, Any] | None = None) -> Path:
    """A profile whose [source] is `source`; [kernel] defaults to the shipped base fragment."""
    kernel = {"fragments": ["base"], **(kernel or {})}
    lines = ["[source]", *(f"{k} = {_toml(v)}" for k, v in source.items() if v is not None),
             "", "[kernel]", *(f"{k} = {_toml(v)}" for k, v in kernel.items() if v is not None)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def context(tmp: Path, source: dict[str, Any], kernel: dict[str, Any] | None = None, name: str = "test",
            build: str = "build", cache: str = "cache") -> Context:
    prof = write_profile(tmp / f"{name}.toml", source, kernel)
    return make_context(str(prof), str(tmp / build), str(tmp / cache))


def store_files(ctx: Context) -> list[Path]:
    """Everything in the verified store: must only ever hold tarballs that passed."""
    return sorted(p for p in ctx.paths.store.rglob("*") if p.is_file()) if ctx.paths.store.exists() else []
