"""Kernel versions: the tree's own (its top-level Makefile) and the conditions fragments put on options.

Options are added, renamed and removed between kernel versions (6.4 dropped SLOB, 6.9 renamed
SPECULATION_MITIGATIONS), so one fragment that serves 6.1 and 6.12 says of such an option, once,
which kernels it is for:

    # tinyuki: linux >= 6.2
    CONFIG_SLUB_TINY=y

The condition governs the next option line (comments may stand between); comparisons are joined by
commas and all must hold (`linux >= 6.2, < 6.4`). A version is compared as far as it is written:
`< 6.4` holds for every 6.3.x, `>= 6.12` for 6.12.0 and later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tinyuki.errors import die

_MAKEFILE_RE = {key: re.compile(rf"^{key}\s*=\s*(\d+)\s*$", re.M) for key in ("VERSION", "PATCHLEVEL", "SUBLEVEL")}
_EXTRA_RE = re.compile(r"^EXTRAVERSION\s*=[ \t]*(\S*)[ \t]*$", re.M)
DIRECTIVE = "# tinyuki:"
_COMPARISON_RE = re.compile(r"^(>=|<)\s*(\d+(?:\.\d+){0,2})$")
SYNTAX_HINT = "write `# tinyuki: linux >= 6.4` or `# tinyuki: linux < 6.4` (comparisons joined by commas: " \
              "`linux >= 6.2, < 6.4`) on a line of its own, right before the option it governs"


@dataclass(frozen=True, order=True)
class KernelVersion:
    """A kernel's VERSION.PATCHLEVEL.SUBLEVEL (EXTRAVERSION, an -rc's, kept for display only)."""

    major: int
    minor: int
    sub: int = 0
    extra: str = ""

    def numbers(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.sub)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.sub}{self.extra}"


def parse_makefile(text: str) -> KernelVersion | None:
    """The version kbuild's top-level Makefile declares; None when it declares none."""
    found = {key: rx.search(text) for key, rx in _MAKEFILE_RE.items()}
    if found["VERSION"] is None or found["PATCHLEVEL"] is None:
        return None
    sub, extra = found["SUBLEVEL"], _EXTRA_RE.search(text)
    return KernelVersion(int(found["VERSION"].group(1)), int(found["PATCHLEVEL"].group(1)),
                         int(sub.group(1)) if sub else 0, extra.group(1) if extra else "")


def tree_version(tree: Path) -> KernelVersion | None:
    """The kernel version of a source tree, read from its Makefile's head (where kbuild keeps it)."""
    try:
        with (tree / "Makefile").open(encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return None
    return parse_makefile(head)


@dataclass(frozen=True)
class Condition:
    """`linux >= 6.2, < 6.4` as written in a fragment, and the comparisons it stands for."""

    text: str
    comparisons: tuple[tuple[str, tuple[int, ...]], ...]

    def holds(self, version: KernelVersion) -> bool:
        for op, bound in self.comparisons:
            have = version.numbers()[: len(bound)]
            if (op == ">=" and have < bound) or (op == "<" and have >= bound):
                return False
        return True


def parse_condition(line: str, where: str) -> Condition:
    """A `# tinyuki: linux ...` line; anything else after `# tinyuki:` is an error, never a comment."""
    body = line.strip()[len(DIRECTIVE):].strip()
    if not body.startswith("linux"):
        raise die(f"{where}: unknown tinyuki directive {line.strip()!r}", SYNTAX_HINT)
    parts = [p.strip() for p in body[len("linux"):].split(",")]
    comparisons: list[tuple[str, tuple[int, ...]]] = []
    for part in parts:
        m = _COMPARISON_RE.match(part)
        if m is None:
            raise die(f"{where}: cannot read the kernel version condition {line.strip()!r} (at {part!r})", SYNTAX_HINT)
        comparisons.append((m.group(1), tuple(int(x) for x in m.group(2).split("."))))
    return Condition(body, tuple(comparisons))
