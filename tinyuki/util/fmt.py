"""One way to show sizes, durations and tables, everywhere tinyuki prints them."""

from __future__ import annotations

from collections.abc import Sequence


def human_size(n: float) -> str:
    """Bytes in binary units: 512 B, 1.4 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def age(seconds: float) -> str:
    """How long ago, in the largest unit that keeps two digits: 45s, 12m, 5h, 3d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def elapsed(seconds: float) -> str:
    """A duration as a build shows it: 42s, 3m05s."""
    s = int(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _widths(rows: Sequence[Sequence[str]]) -> list[int]:
    return [max(len(str(r[i])) if i < len(r) else 0 for r in rows) for i in range(max(len(r) for r in rows))]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align_right: Sequence[int] = ()) -> str:
    """A Markdown table, aligned: readable in a terminal and pastable into an issue or the README."""
    widths = _widths([headers, *rows])

    def cell(i: int, c: object) -> str:
        return str(c).rjust(widths[i]) if i in align_right else str(c).ljust(widths[i])

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(cell(i, c) for i, c in enumerate(cells)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in align_right else "-" * (w + 2)
                          for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule, *map(line, rows)])


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align_right: Sequence[int] = (),
               rule: bool = True) -> str:
    """Columns separated by two spaces, a rule under the header: the console's tables."""
    widths = _widths([headers, *rows])

    def line(cells: Sequence[object]) -> str:
        return "  ".join(str(c).rjust(widths[i]) if i in align_right else str(c).ljust(widths[i])
                         for i, c in enumerate(cells)).rstrip()

    lines = [line(headers), *map(line, rows)]
    if rule:
        lines.insert(1, "-" * max(len(x) for x in lines))
    return "\n".join(lines)


def progress_bar(done: int, total: int, seconds: float, width: int = 30) -> str:
    """One line of a copy's progress, redrawn in place with a leading CR: bar, percent, sizes, rate."""
    frac = done / total if total else 1.0
    filled = int(frac * width)
    rate = done / seconds if seconds > 0 else 0.0
    return (f"\r[{'#' * filled}{'.' * (width - filled)}] {frac:4.0%} "
            f"{human_size(done)} of {human_size(total)}, {human_size(rate)}/s")
