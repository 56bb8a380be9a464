"""`python -m bench.cache`: what the artifact cache saves, measured on this machine.

  no-op `doit`                      median of several runs in an up-to-date build dir
  no-op `make bzImage` (kbuild)     the same build dir's kbuild, what a naive pipeline pays every run
  fresh build dir, warm cache       `doit uki` in an empty build dir sharing cache/: time to the UKI
  cold build                        what the restored steps cost when they were built (from the
                                    cache entries), or measured now with --real

Fresh machines (--fresh; on a snapshot of the tree, restore-only: a stage whose key the warm
cache lacks fails rather than build; --allow-build uki lets a guard run build a compiler-free stage):
  CI restore                        a new cache dir holding what CI carries (sha256/, locks/,
                                    artifacts/, ccache/; no trees/), a new build dir: `doit uki`
  warm remote                       an empty cache dir and no ccache, the warm cache's artifacts/
                                    served by a real nginx (WebDAV, read-only use): `doit uki`
  with the size of what CI carries against cache/trees/, and the UKIs' sha256 (all must match).

Default: the real debian profile's existing build (build/debian) and cache/.
--real also measures a cold build of the debian profile in a fresh build dir
with the artifact cache bypassed (minutes). --fake runs everything on the fake
kernel tree of the tests in a temporary dir (seconds; for checking the
benchmark itself). Prints a Markdown table and writes bench/results/cache.json.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import webdav
from bench.common import doit_cmd, kbuild_make, timed
from tinyuki.cache.artifacts import TRAFFIC_DIR
from tinyuki.config.context import ROOT, make_context
from tinyuki.errors import TinyukiError, die
from tinyuki.records import Tree
from tinyuki.tasks import PIPELINE
from tinyuki.tasks.uki import UKI
from tinyuki.util import fs as fsutil
from tinyuki.util import runner
from tinyuki.util.fmt import human_size, markdown_table

RESULTS = ROOT / "bench" / "results" / "cache.json"
RESTORED_RE = re.compile(r"^(\w+): restored from artifact cache \(key (\w+)….*? in ([\d.]+)s; building it took "
                         r"([\d.]+)s", re.M)


# The project tree whose dodo.py runs: --fresh runs a snapshot, so edits made meanwhile cannot change the keys.
SOURCE = {"root": ROOT}


def doit(args: list[str], profile: str, build: Path, cache: Path,
         env: dict[str, str] | None = None) -> tuple[float, str]:
    """`doit ARGS` for this profile, build dir and cache dir: (seconds, its output); a failure raises."""
    cmd = doit_cmd(*args, f"profile={profile}", f"build_dir={build}", f"cache_dir={cache}", root=SOURCE["root"])
    return timed(cmd, cwd=SOURCE["root"], env={**os.environ, **(env or {})}, what="bench.cache: doit")


def snapshot(dest: Path) -> Path:
    """A copy of the project's files (tracked and untracked, not ignored) as they are now."""
    names = runner.output(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"]).split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def ran(out: str) -> list[str]:
    return [line[3:].strip() for line in out.splitlines() if line.startswith(".  ")]


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def median_of(fn: Any, runs: int) -> dict[str, Any]:
    """Wall time and the CPU time of the processes run (on a busy machine wall time waits for a core)."""
    times, cpu = [], []
    for _ in range(runs):
        before = child_cpu()
        times.append(fn())
        cpu.append(child_cpu() - before)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "runs": runs,
            "cpu_median": statistics.median(cpu), "load": os.getloadavg()[0]}


def noop_doit(profile: str, build: Path, cache: Path, runs: int) -> dict[str, Any]:
    def once() -> float:
        elapsed, out = doit(["uki"], profile, build, cache)
        if ran(out):
            raise die(f"bench.cache: {build} is not up to date, tasks ran: {', '.join(ran(out))}",
                      f"run `doit uki profile={profile} build_dir={build}` first")
        return elapsed

    return median_of(once, runs)


def noop_make(profile: str, build: Path, cache: Path, runs: int) -> dict[str, Any]:
    """kbuild's own no-op: the make the kernel task would run (its compile cache's CC too), in the same build dir."""
    ctx = make_context(profile, str(build), str(cache))
    cmd, env = kbuild_make(ctx, Tree.load(ctx.paths.build).location(), ctx.arch.image_target)

    def once() -> float:
        elapsed, out = timed(cmd, env=env, what="bench.cache: make bzImage")
        compiled = [x for x in out.splitlines() if x.startswith(("  CC ", "  LD "))]
        if compiled:
            raise die(f"bench.cache: make bzImage in {ctx.paths.kbuild} was not a no-op: {compiled[:5]}",
                      f"run `doit uki profile={profile} build_dir={build}` first")
        return elapsed

    return {**median_of(once, runs), "command": " ".join(cmd)}


def warm(profile: str, cache: Path, top: Path) -> dict[str, Any]:
    """A fresh build dir sharing the cache: every expensive task should be restored."""
    build = top / "warm"
    elapsed, out = doit(["uki"], profile, build, cache)
    restored = {m.group(1): {"key": m.group(2), "restore_s": float(m.group(3)), "built_in_s": float(m.group(4))}
                for m in RESTORED_RE.finditer(out)}
    built = [t for t in ran(out) if t not in restored]
    return {"seconds": elapsed, "restored": restored, "ran_without_cache_hit": built,
            "kbuild_ran": "kernel build:" in out or "relink with the initramfs:" in out,
            "uki_sha256": fsutil.sha256_file(build / UKI.path), "build_dir": str(build)}


def cold(profile: str, cache: Path, top: Path) -> dict[str, Any]:
    """A full build in a fresh build dir with the artifact cache off (ccache as configured)."""
    build = top / "cold"
    elapsed, out = doit(["uki"], profile, build, cache, env={"TINYUKI_ARTIFACT_CACHE": "off"})
    return {"seconds": elapsed, "ran": ran(out), "uki_sha256": fsutil.sha256_file(build / UKI.path)}


# What CI carries between runs (.github/workflows/build.yml CACHE_PATHS); trees/ is recreated by extraction.
CARRIED = ("sha256", "locks", "artifacts", "ccache")


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) \
        if path.is_dir() else 0


def copy_dirs(src: Path, dest: Path, names: tuple[str, ...]) -> None:
    """Real copies (restores touch entries: the warm cache itself must not change)."""
    for name in names:
        if (src / name).is_dir():
            shutil.copytree(src / name, dest / name, symlinks=True)


def guard(profile: str, build: Path, cache: Path, variables: dict[str, str],
          allow_build: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Run the stages one by one in a scratch build dir, the cached ones restore-only.

    A stage the warm cache lacks (a recipe changed since it was filled) fails instead of
    starting a real kernel build, which a benchmark must not. Stages in `allow_build` that
    compile nothing (no compiler environment in their key) may be built and stored instead:
    the fresh runs then find them in the cache like the rest.
    """
    restored: list[str] = []
    built: list[str] = []
    for stage in pipeline_to_uki():
        may_build = stage.name in allow_build and not stage.env
        env = {} if may_build or not stage.cache else {"TINYUKI_ARTIFACT_CACHE": "restore"}
        _, out = doit([stage.name, *(f"{k}={v}" for k, v in variables.items())], profile, build, cache, env=env)
        if stage.cache:
            (restored if f"{stage.name}: restored from artifact cache" in out else built).append(stage.name)
    return restored, built


UKI_STAGE = "uki"


def pipeline_to_uki() -> list[Any]:
    """The stages `doit uki` runs, in pipeline order: uki and everything it needs."""
    wanted: set[str] = set()
    todo = [UKI_STAGE]
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(PIPELINE[name].needs)
    return [s for s in PIPELINE if s.name in wanted]


def fresh_run(profile: str, build: Path, cache: Path, variables: dict[str, str]) -> dict[str, Any]:
    """`doit uki` on a fresh machine: the time to the UKI, what was restored, whether anything compiled.

    TINYUKI_ARTIFACT_CACHE=restore: a stage missing from the cache fails the run instead of being built.
    """
    elapsed, out = doit(["uki", *(f"{k}={v}" for k, v in variables.items())], profile, build, cache,
                        env={"TINYUKI_ARTIFACT_CACHE": "restore"})
    restored = {m.group(1): {"key": m.group(2), "restore_s": float(m.group(3)), "built_in_s": float(m.group(4))}
                for m in RESTORED_RE.finditer(out)}
    cached = [s.name for s in pipeline_to_uki() if s.cache]
    return {"seconds": elapsed, "restored": restored, "not_restored": [s for s in cached if s not in restored],
            "kbuild_ran": "kernel build:" in out or "relink with the initramfs:" in out,
            "compiler_runs": [x[:200] for x in out.splitlines() if x.startswith("+ ") and "gcc" in x],
            "downloaded_bytes": sum(int(fsutil.read_json(t).get("bytes_down", 0))
                                    for t in (build / "logs" / TRAFFIC_DIR).glob("*.json")),
            "uki_sha256": fsutil.sha256_file(build / UKI.path)}


def fresh(args: argparse.Namespace) -> dict[str, Any]:
    """CI restore and warm remote, each on a new cache dir and build dir (see the module doc)."""
    src = args.cache_dir
    result: dict[str, Any] = {"profile": args.profile, "source_cache": str(src), "when": time.time(),
                              "carried_bytes": {n: dir_size(src / n) for n in CARRIED},
                              "trees_bytes": dir_size(src / "trees")}
    with tempfile.TemporaryDirectory(prefix="tinyuki-bench-fresh-") as tmp:
        top = Path(tmp)
        SOURCE["root"] = args.source or snapshot(top / "src")
        result["source_root"] = str(args.source) if args.source else "snapshot of the working tree at the start"
        g = top / "guard"
        copy_dirs(src, g / "cache", ("sha256", "locks", "artifacts"))
        result["guard_restored"], result["guard_built"] = guard(
            args.profile, g / "build", g / "cache", {"ccache": "0"}, tuple(args.allow_build))
        result["reference_uki_sha256"] = fsutil.sha256_file(g / "build" / UKI.path)
        shutil.rmtree(g / "cache" / "trees")
        # the warm cache, plus what the guard was allowed to build (the same for both fresh runs)
        warm_src = g / "cache"
        copy_dirs(src, warm_src, ("ccache",))

        ci = top / "ci"
        copy_dirs(warm_src, ci / "cache", CARRIED)
        result["ci"] = fresh_run(args.profile, ci / "build", ci / "cache", {})
        shutil.rmtree(ci)

        r = top / "remote"
        copy_dirs(warm_src, r / "served", ("artifacts",))
        proc, url = webdav.start(r / "nginx", r / "served" / "artifacts")
        try:
            result["remote"] = fresh_run(args.profile, r / "build", r / "cache",
                                         {"ccache": "0", "artifact_remote": url, "artifact_remote_mode": "ro"})
        finally:
            proc.terminate()
            proc.wait()
        result["remote"]["ccache_dir_exists"] = (r / "cache" / "ccache").exists()
        result["carried_bytes_after"] = {n: dir_size(warm_src / n) for n in CARRIED}
    shas = {result["reference_uki_sha256"], result["ci"]["uki_sha256"], result["remote"]["uki_sha256"]}
    result["uki_identical"] = len(shas) == 1
    return result


def fresh_table(r: dict[str, Any]) -> str:
    carried = sum(r["carried_bytes"].values())
    rows = [["what CI carries (" + ", ".join(f"{n}/ {human_size(b)}" for n, b in r["carried_bytes"].items()) + ")",
             human_size(carried), f"instead of {human_size(carried + r['trees_bytes'])} with trees/"]]
    for name, label in (("ci", "fresh build dir, CI's restored cache (no trees/), to the UKI"),
                        ("remote", "fresh machine (empty cache/, no ccache), warm nginx remote, to the UKI")):
        x = r[name]
        note = (f"restored {len(x['restored'])}, not restored: {', '.join(x['not_restored']) or 'none'}; "
                f"compiler runs: {len(x['compiler_runs'])}; kbuild ran: {'yes' if x['kbuild_ran'] else 'no'}")
        if x["downloaded_bytes"]:
            note += f"; downloaded {human_size(x['downloaded_bytes'])}"
        rows.append([label, f"{x['seconds']:.1f} s", note])
    if r.get("guard_built"):
        rows.append(["built by the guard (recipe changed since the warm cache; no compiler)",
                     ", ".join(r["guard_built"]), "stored, then restored by both fresh runs"])
    rows.append(["UKI sha256 (guard run, CI, remote)", r["ci"]["uki_sha256"][:12] + "…",
                 "identical" if r["uki_identical"] else "DIFFERENT"])
    return markdown_table(["measurement", "value", "note"], rows)


def fake_project(top: Path) -> tuple[str, Path]:
    """The tests' fake kernel as a tarball and a profile using it (musl: the fake tree has no nolibc)."""
    fake = ROOT / "tests" / "fakekernel"
    tar = top / "linux-9.9.tar"
    with tarfile.open(tar, "w") as t:
        t.add(fake, arcname="linux-9.9")
    profile = top / "fake.toml"
    profile.write_text("\n".join([
        "[source]", f'urls = ["{tar}"]', f'sha256 = "{fsutil.sha256_file(tar)}"', "",
        "[kernel]", 'fragments = ["base", "initramfs", "console", "block", "efi", "size"]', "",
        "[init]", f'sources = ["{ROOT / "init" / "init.c"}"]', 'libc = "musl"', "",
    ]), encoding="utf-8")
    return str(profile), top / "cache"


def table(r: dict[str, Any]) -> str:
    n, m, w, c = r["noop_doit"], r["noop_make"], r["warm"], r["cold"]
    restored = ", ".join(f"{t} {v['restore_s']:.1f}s" for t, v in w["restored"].items())
    rows = [
        [f"no-op `doit uki` (median of {n['runs']})", f"{n['median']:.2f}",
         f"min {n['min']:.2f}, max {n['max']:.2f}, CPU {n['cpu_median']:.2f} s; no task ran"],
        [f"kbuild's no-op `make bzImage`, same build dir (median of {m['runs']})", f"{m['median']:.2f}",
         f"CPU {m['cpu_median']:.2f} s; what the kernel task avoids running"],
        ["fresh build dir, warm artifact cache, to the UKI", f"{w['seconds']:.1f}",
         f"restored: {restored}; kbuild ran: {'yes' if w['kbuild_ran'] else 'no'}"],
        ["cold build of the same steps", f"{c['seconds']:.1f}", c["source"]],
        ["speed-up, warm cache vs cold", f"{c['seconds'] / max(w['seconds'], 1e-9):.0f}x", ""],
    ]
    return markdown_table(["measurement", "seconds", "note"], rows, align_right=(1,))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tinyuki-bench-cache-") as tmp:
        top = Path(tmp)
        profile, cache = args.profile, args.cache_dir
        if args.fake:
            profile, cache = fake_project(top)
            args.build_dir = top / "built"
            doit(["uki"], profile, args.build_dir, cache)  # fills the cache
        build = args.build_dir or ROOT / "build" / args.profile
        result: dict[str, Any] = {"profile": profile if not args.fake else "fake kernel (tests/fakekernel)",
                                  "build_dir": str(build), "cache_dir": str(cache), "when": time.time()}
        result["noop_doit"] = noop_doit(profile, build, cache, args.runs)
        result["noop_make"] = noop_make(profile, build, cache, max(1, min(args.runs, 3)))
        result["warm"] = warm(profile, cache, top)
        if args.real or args.fake:
            c = cold(profile, cache, top)
            result["cold"] = {**c, "source": "measured now, artifact cache off"}
        else:
            total = sum(v["built_in_s"] for v in result["warm"]["restored"].values())
            result["cold"] = {"seconds": total, "source": "sum of the restored entries' own build times"}
        if result["warm"]["ran_without_cache_hit"]:
            print(f"note: ran without a cache hit: {result['warm']['ran_without_cache_hit']}", file=sys.stderr)
        shutil.rmtree(top / "warm", ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cache", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="debian")
    ap.add_argument("--build-dir", type=Path, default=None, help="an up-to-date build dir (default build/<profile>)")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "cache")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--real", action="store_true", help="also measure a cold real build (minutes)")
    ap.add_argument("--fake", action="store_true", help="use the tests' fake kernel tree in a temporary dir")
    ap.add_argument("--fresh", action="store_true",
                    help="only the fresh-machine runs: CI's restored cache and a warm nginx remote (needs nginx)")
    ap.add_argument("--allow-build", action="append", default=[], metavar="STAGE",
                    help="--fresh: a stage that compiles nothing (uki) the guard may build when this tree's recipe"
                         " changed since the warm cache was filled")
    ap.add_argument("--source", type=Path, default=None,
                    help="--fresh: the project tree to run (default: a snapshot of this working tree)")
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.fresh:
        output = args.output or RESULTS.with_name("cache-fresh.json")
        try:
            fresh_result = fresh(args)
        except TinyukiError as e:
            print(e, file=sys.stderr)
            return 1
        output.parent.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write_json(output, fresh_result)
        print(fresh_table(fresh_result))
        print(f"\n(results: {output})")
        return 0 if fresh_result["uki_identical"] else 1
    args.output = args.output or RESULTS
    try:
        result = measure(args)
    except TinyukiError as e:
        print(e, file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write_json(args.output, result)
    print(table(result))
    print(f"\nload average during the no-op runs: {result['noop_doit']['load']:.1f} on {os.cpu_count()} CPUs")
    print(f"\n(results: {args.output})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
