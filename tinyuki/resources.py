"""Where tinyuki's own files live: fragments, patches, shipped profiles, keys, examples, the default program.

A wheel carries them as package data in tinyuki/_data (pyproject.toml maps the clone's top-level
configs/, patches/, init/ and examples/ there); a clone, or an editable install of one, reads them in
place. They are found from this package's own directory, never from the cwd, so a user's project
needs no path into tinyuki's clone.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_BUNDLED = _PACKAGE / "_data"

# The folder holding configs/, patches/, init/ and examples/.
DATA: Path = _BUNDLED if (_BUNDLED / "configs").is_dir() else _PACKAGE.parent
# tinyuki's own clone when running from one (its dodo.py, tests and scripts beside the package), else None.
CLONE: Path | None = None if DATA == _BUNDLED else _PACKAGE.parent
