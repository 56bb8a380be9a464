"""Program builders benchmark: the hello of each builder, its size, and the rebuild after a one-line change.

  python -m bench.programs [--runs N] [--cache-dir DIR] [--only go,rust]

For each example profile (examples/hello-*.toml) the example is copied to a
scratch directory, `doit init` builds it once (warming the toolchain's own
caches: Go's build cache, Cargo's target dir, ccache), and then, N times, one
line of the program is changed and `doit init` timed: what a user waits for
between editing the program and having a new /init (the initramfs and the
relink come on top, the same for every builder). The figures land in
bench/results/programs.json and .md; the README's "Your program" table quotes them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import report
from bench.common import doit_cmd, timed
from tinyuki.config.context import ROOT
from tinyuki.toolchain import builders, tools
from tinyuki.util import fs as fsutil
from tinyuki.util import runner

RESULTS = ROOT / "bench" / "results" / "programs.json"
# example: (directory copied, the file whose greeting line is edited, how to turn its text into the changed text)
EXAMPLES = {
    "nolibc": ("hello-c", "hello.c"),
    "musl": ("hello-c", "hello.c"),
    "glibc": ("hello-c", "hello.c"),
    "go": ("hello-go", "main.go"),
    "rust": ("hello-rust", "src/main.rs"),
    "prebuilt": ("hello-c", "hello.c"),
}
GREETING = re.compile(r'"hello from ([^"(]*)')


def one_line_change(path: Path, n: int) -> None:
    """Change the greeting line of the program (a new string literal: the binary must change)."""
    text = path.read_text()
    new, count = GREETING.subn(f'"hello from edit {n} \\1', text, count=1)
    assert count == 1, f"no greeting line in {path}"
    path.write_text(new)


def scratch_profile(name: str, work: Path) -> tuple[Path, Path, list[list[str]]]:
    """The example copied to `work`, a profile pointing at the copy, the file to edit and the pre-build steps."""
    folder, edited = EXAMPLES[name]
    copy = work / folder
    if not copy.exists():
        shutil.copytree(ROOT / "examples" / folder, copy, ignore=shutil.ignore_patterns("target", "hello"))
    text = (ROOT / "examples" / f"hello-{name}.toml").read_text()
    steps: list[list[str]] = []
    if name == "prebuilt":
        # made outside tinyuki, as the user's own toolchain would: then checked and packed
        binary = work / "hello-prebuilt"
        steps.append(["gcc", "-static", "-Os", "-s", "-Wl,--build-id=none",
                      '-DTINYUKI_MARKER="hello: started (prebuilt)"', '-DHELLO_LANG="prebuilt"',
                      "-o", str(binary), str(copy / edited)])
        text = text.replace('"hello-prebuilt/hello"', f'"{binary}"')
    profile = work / f"hello-{name}.toml"  # beside the copy: its relative paths name the copy's files
    profile.write_text(text)
    return profile, copy / edited, steps


def measure_one(name: str, work: Path, cache: Path, runs: int) -> dict[str, Any]:
    profile, edited, steps = scratch_profile(name, work)
    build = work / f"build-{name}"
    log = work / f"{name}.log"
    words = [f"profile={profile}", f"build_dir={build}", f"cache_dir={cache}", "init"]
    for step in steps:
        runner.run(step, log=log, what=f"building the prebuilt {name}")
    first, _ = timed(doit_cmd(*words), log=log, what=f"building hello-{name}")
    seconds = []
    for n in range(runs):
        one_line_change(edited, n)
        took = 0.0
        for step in steps:
            t, _ = timed(step, log=log, what="rebuilding the prebuilt program")
            took += t
        t, out = timed(doit_cmd(*words), log=log, what=f"rebuilding hello-{name}")
        assert ".  init" in out, f"doit did not rebuild init for {name}:\n{out}"
        seconds.append(took + t)
    size = (build / "init" / "init").stat().st_size
    builder = builders.BUILDERS[name]
    return {
        "builder": name, "needs": builder.needs, "size": size, "first_build": round(first, 2),
        "rebuild": {"runs": seconds, "median": round(statistics.median(seconds), 2)},
        "tools": {t: tools.version(t) for t in builder.tools} or {"gcc": tools.version("gcc")},
    }


def markdown(results: dict[str, Any]) -> str:
    rows = [["builder", "needs", "hello /init", "rebuild after a one-line change"]]
    for r in results["builders"]:
        rows.append([f"`{r['builder']}`", r["needs"], f"{r['size']:,} B", f"{r['rebuild']['median']:.2f} s"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    where = f"{results['machine']['cpu']}, {results['machine']['cores']} cores"
    return "\n".join(lines) + (f"\n\nMeasured by `{results['command']}` on {where} ({results['runs']} runs, median;"
                               " `doit init` with warm toolchain caches).\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.programs", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "cache")
    parser.add_argument("--only", default="")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    names = [n for n in EXAMPLES if not args.only or n in args.only.split(",")]
    command = " ".join(["python", "-m", "bench.programs", *(argv if argv is not None else sys.argv[1:])])
    results: dict[str, Any] = {**report.machine(ROOT), "command": command, "runs": args.runs, "builders": []}
    with tempfile.TemporaryDirectory(prefix="tinyuki-bench-programs-") as tmp:
        for name in names:
            print(f"bench programs: {name}", file=sys.stderr, flush=True)
            results["builders"].append(measure_one(name, Path(tmp), args.cache_dir.absolute(), args.runs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write_json(args.out, results)
    md = markdown(results)
    fsutil.atomic_write(args.out.with_suffix(".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TINYUKI_CCACHE", "auto")
    raise SystemExit(main())
