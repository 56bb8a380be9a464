"""Kernel config fragments and .config files: what was asked, what Kconfig made of it.

Kconfig drops an option whose dependencies are not met without a word, and
`merge_config.sh -m` exits before its own check, so a fragment can silently
lose CONFIG_VIRTIO_BLK and the kernel boots without a disk. This module reads
the fragments (remembering file:line of every request), reads the final
.config, and lists every request that did not survive, with its Kconfig
dependencies when the source tree is at hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tinyuki.errors import die
from tinyuki.formats import kversion

SET_RE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
UNSET_RE = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")
NOT_SET = "n"

# The embed stage sets this one to the initramfs it packs; a fragment must not.
INITRAMFS_SOURCE = "CONFIG_INITRAMFS_SOURCE"


@dataclass(frozen=True)
class Request:
    """One option a fragment asks for: value is the text after '=', or 'n' for 'is not set'."""

    symbol: str
    value: str
    file: str
    line: int
    # The kernel versions the fragment asks it for (`# tinyuki: linux >= 6.2`); None: every version.
    condition: kversion.Condition | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"symbol": self.symbol, "value": self.value, "file": self.file, "line": self.line}
        if self.condition is not None:
            out["condition"] = self.condition.text
        return out


@dataclass(frozen=True)
class Mismatch:
    """A request the final .config does not honour; actual is None when the symbol is absent."""

    request: Request
    actual: str | None
    depends: tuple[str, ...] = ()
    # No Kconfig file of the tree (for this architecture) defines the symbol: the kernel has no such option.
    unknown: bool = False


def parse_fragment(text: str, name: str) -> list[Request]:
    """Read a fragment; anything that is neither an option, a comment nor blank is an error.

    A typo like `CONFIG_PCI y` would otherwise be a comment to Kconfig and the
    option would silently not be requested at all.
    """
    out: list[Request] = []
    condition: tuple[kversion.Condition, int] | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith(kversion.DIRECTIVE):
            if condition is not None:
                raise die(f"{name}:{n}: a second kernel version condition before an option"
                          f" (the one at line {condition[1]} has no option yet)",
                          "join them into one line: `# tinyuki: linux >= 6.2, < 6.4`")
            condition = (kversion.parse_condition(line, f"{name}:{n}"), n)
            continue
        if m := SET_RE.match(line):
            symbol, value = m.group(1), m.group(2)
            if value == "":
                raise die(f"{name}:{n}: {symbol}= has no value",
                          'write y, m, a number, a "string", or `# ' + symbol + ' is not set`')
        elif m := UNSET_RE.match(line):
            symbol, value = m.group(1), NOT_SET
        elif not line or line.startswith("#"):
            continue
        else:
            raise die(f"{name}:{n}: not a config line: {raw!r}",
                      "fragment lines are CONFIG_X=value, `# CONFIG_X is not set`, comments (#) or blank")
        if symbol == INITRAMFS_SOURCE:
            raise die(f"{name}:{n}: {INITRAMFS_SOURCE} is set by tinyuki's embed stage, not by fragments",
                      "remove the line; the initramfs comes from the profile's [init] section")
        out.append(Request(symbol, value, name, n, condition[0] if condition else None))
        condition = None
    if condition is not None:
        raise die(f"{name}:{condition[1]}: the kernel version condition governs no option (none follows it)",
                  kversion.SYNTAX_HINT)
    return out


def for_kernel(requests: list[Request], version: kversion.KernelVersion | None, fragment: str) -> list[Request]:
    """The requests a fragment makes of this kernel: those whose version condition holds for it."""
    if version is None:
        conditional = [r for r in requests if r.condition is not None]
        if conditional:
            r = conditional[0]
            raise die(f"{r.where}: {r.symbol} is asked for `{r.condition.text}`"
                      " but the kernel tree declares no version (no VERSION and PATCHLEVEL in its Makefile)",
                      f"build a kernel tree with kbuild's top-level Makefile, or drop the condition from {fragment}")
        return requests
    return [r for r in requests if r.condition is None or r.condition.holds(version)]


def without_lines(text: str, lines: set[int]) -> str:
    """A fragment with the given (1-based) lines and its version conditions emptied: what merge_config.sh
    is handed for this kernel, and read back it asks for exactly what the proof checks.

    Emptied, not removed, so every remaining line keeps its number.
    """
    return "".join("\n" if n in lines or raw.strip().startswith(kversion.DIRECTIVE) else raw
                   for n, raw in enumerate(text.splitlines(keepends=True), 1))


def read_fragment(path: Path, name: str | None = None) -> list[Request]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise die(f"cannot read config fragment {path}: {e.strerror}",
                  "check [kernel] fragments in the profile") from e
    return parse_fragment(text, name or str(path))


def merge_requests(fragments: Iterable[list[Request]]) -> dict[str, Request]:
    """The requests in force after merging in order: a later fragment overrides an earlier one.

    That is merge_config.sh's rule, so the check asks for what the merge wrote.
    """
    merged: dict[str, Request] = {}
    for requests in fragments:
        for r in requests:
            merged.pop(r.symbol, None)
            merged[r.symbol] = r
    return merged


def parse_config(text: str) -> dict[str, str]:
    """A .config as {CONFIG_X: value}, with 'n' for `# CONFIG_X is not set`."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if m := SET_RE.match(line):
            values[m.group(1)] = m.group(2)
        elif m := UNSET_RE.match(line):
            values[m.group(1)] = NOT_SET
    return values


def holds(request: Request, actual: str | None) -> bool:
    """An 'is not set' request also holds when Kconfig hid the symbol: a hidden option is off."""
    if request.value == NOT_SET:
        return actual in (None, NOT_SET)
    return actual == request.value


def check(requests: Mapping[str, Request], config: Mapping[str, str]) -> list[Mismatch]:
    return [Mismatch(r, config.get(r.symbol)) for r in requests.values() if not holds(r, config.get(r.symbol))]


def describe(value: str | None) -> str:
    if value is None:
        return "absent from .config (unknown symbol, or its dependencies are not met)"
    if value == NOT_SET:
        return "is not set"
    return f"={value}"


def asked(value: str) -> str:
    return "is not set" if value == NOT_SET else f"={value}"


def render(mismatches: list[Mismatch], kernel: str = "") -> str:
    """One block per dropped option: what was asked, where, what it became, what it depends on.

    `kernel` names the kernel ("Linux 6.12.57 for arm64"): an option one version has and another
    lacks is named with the version that lacks it.
    """
    of = f" of {kernel}" if kernel else ""
    lines = [f"{len(mismatches)} requested kernel option(s) did not hold in the final .config{of}:"]
    for m in mismatches:
        r = m.request
        if m.unknown:
            lines.append(f"  {r.symbol}: asked {asked(r.value)} at {r.where}, but {kernel or 'this kernel'} has no"
                         " such option (no Kconfig file of the tree defines it)")
            continue
        lines.append(f"  {r.symbol}: asked {asked(r.value)} at {r.where}, became {describe(m.actual)}")
        for dep in m.depends:
            lines.append(f"      Kconfig: {dep}")
    return "\n".join(lines)


def set_option(text: str, symbol: str, value: str) -> str:
    """Replace (or append) one option in a .config's text; value is the text after '='."""
    out: list[str] = []
    done = False
    for line in text.splitlines():
        stripped = line.strip()
        m = SET_RE.match(stripped) or UNSET_RE.match(stripped)
        if m and m.group(1) == symbol:
            if not done:
                out.append(f"{symbol}={value}")
                done = True
            continue
        out.append(line)
    if not done:
        out.append(f"{symbol}={value}")
    return "\n".join(out) + "\n"


def quote(s: str) -> str:
    """A Kconfig string value, as Kconfig writes it."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------- Kconfig hints

_CONFIG_RE = re.compile(r"^\s*(?:menu)?config\s+([A-Za-z0-9_]+)\s*$")
_DEPENDS_RE = re.compile(r"^\s*depends\s+on\s+(.+?)\s*$")
_HELP_RE = re.compile(r"^\s*(?:help|---help---)\s*$")
_IF_RE = re.compile(r"^\s*if\s+(.+?)\s*$")
_ENDIF_RE = re.compile(r"^\s*endif\b")
_ENTRY_END_RE = re.compile(
    r"^\s*(?:(?:menu)?config|choice|endchoice|menu|endmenu|if|endif|source|comment|help|---help---)\b")


def kconfig_depends(text: str, symbol: str) -> list[str]:
    """The `depends on` lines of `symbol` in one Kconfig file, plus the `if` blocks around it.

    Only a hint for the error message (selects and menu dependencies are not
    followed), but it names PCI for ATA_PIIX and VIRTIO_MENU for VIRTIO_PCI.
    """
    name = symbol.removeprefix("CONFIG_")
    found: list[str] = []
    ifs: list[str] = []
    inside = False
    help_indent: int | None = None  # inside a help text: its indentation, once known
    in_help = False
    for raw in text.splitlines():
        line = raw.expandtabs(8)
        if in_help:
            indent = len(line) - len(line.lstrip())
            if not line.strip():
                continue
            if help_indent is None:
                help_indent = indent
            if indent >= help_indent:
                continue
            in_help = False
        if _HELP_RE.match(line):
            in_help, help_indent, inside = True, None, False
            continue
        if inside and (dm := _DEPENDS_RE.match(line)):
            found.append(f"depends on {dm.group(1)}")
            continue
        if _ENTRY_END_RE.match(line):
            inside = False
        if cm := _CONFIG_RE.match(line):
            if cm.group(1) == name:
                inside = True
                found.extend(f"inside `if {cond}`" for cond in ifs)
        elif im := _IF_RE.match(line):
            ifs.append(im.group(1))
        elif _ENDIF_RE.match(line) and ifs:
            ifs.pop()
    return found


def tree_depends(tree: Path, symbols: Iterable[str], arch: str = "x86") -> dict[str, list[str]]:
    """Look the symbols up in the tree's Kconfig files (other architectures skipped)."""
    wanted = {s.removeprefix("CONFIG_") for s in symbols}
    hints: dict[str, list[str]] = {}
    if not wanted or not tree.is_dir():
        return hints
    pattern = re.compile(r"^\s*(?:menu)?config\s+(" + "|".join(sorted(wanted)) + r")\s*$", re.M)
    for path in sorted(tree.rglob("Kconfig*")):
        rel = path.relative_to(tree).parts
        if rel[0] == "arch" and len(rel) > 1 and rel[1] != arch:
            continue
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        where = "/".join(rel)
        for sym in sorted({m.group(1) for m in pattern.finditer(text)}):
            deps = kconfig_depends(text, sym)
            hints.setdefault(f"CONFIG_{sym}", []).extend(f"{d} ({where})" for d in deps)
    return hints
