"""`python -m bench.cache`: what the artifact cache saves, measured on this machine.

  no-op `doit`                      median of several runs in an up-to-date build dir
  no-op `make bzImage` (kbuild)     the same build dir's kbuild, what a naive pipeline pays every run
  fresh build dir, warm cache       `doit uki` in an empty build dir sharing cache/: time to the UKI
  cold build                        what the restored steps cost when they were built (from the
                                    cache entries), or measured now with --real

Default: the real debian profile's existing build (build/debian) and cache/.
--real also measures a cold build of the debian profile in a fresh build dir
with the artifact cache bypassed (minutes). --fake runs everything on the fake
kernel tree of the tests in a temporary dir (seconds; for checking the
benchmark itself). Prints a Markdown table and writes bench/results/cache.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tasks import PIPELINE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "cache.json"
RESTORED_RE = re.compile(r"^(\w+): restored from artifact cache \(key (\w+)….*? in ([\d.]+)s; building it took "
                         r"([\d.]+)s", re.M)


def doit(args: list[str], profile: str, build: Path, cache: Path, env: dict[str, str] | None = None,
         timeout: int = 3600) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), *args, f"profile={profile}",
           f"build_dir={build}", f"cache_dir={cache}"]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    elapsed = time.monotonic() - start
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"bench.cache: {' '.join(cmd)} failed:\n{out[-3000:]}")
    return elapsed, out


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
            raise SystemExit(f"bench.cache: {build} is not up to date, tasks ran: {ran(out)}; run `doit` first")
        return elapsed

    return median_of(once, runs)


def noop_make(profile: str, build: Path, cache: Path, runs: int) -> dict[str, Any]:
    """kbuild's own no-op: the make the kernel task would run, in the same build dir."""
    sys.path.insert(0, str(ROOT))
    from tinyuki.config.context import make_context
    from tinyuki.toolchain.kbuild import make_cmd, make_env, read_tree

    ctx = make_context(profile, str(build), str(cache))
    tree = read_tree(PIPELINE.path(ctx, "tree.json"))
    cmd = make_cmd(tree, ctx.paths.kbuild, "bzImage", jobs=ctx.jobs)
    env = make_env(ctx.profile.kernel, tree, ctx.paths.kbuild)
    try:  # the compile cache's CC, when the pipeline uses one: kbuild recompiles when CC changes
        from tinyuki.cache import compile as compilecache

        compiling = compilecache.for_context(ctx)
        cmd = make_cmd(tree, ctx.paths.kbuild, "bzImage", jobs=ctx.jobs, make_vars=compiling.make_vars())
        env = compiling.environ(env)
    except ImportError:
        pass

    def once() -> float:
        start = time.monotonic()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        elapsed = time.monotonic() - start
        if proc.returncode != 0:
            raise SystemExit(f"bench.cache: {' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        compiled = [x for x in proc.stdout.splitlines() if x.startswith(("  CC ", "  LD "))]
        if compiled:
            raise SystemExit(f"bench.cache: make bzImage in {ctx.paths.kbuild} was not a no-op: {compiled[:5]}")
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
            "uki_sha256": hashlib.sha256((build / "tinyuki.efi").read_bytes()).hexdigest(), "build_dir": str(build)}


def cold(profile: str, cache: Path, top: Path) -> dict[str, Any]:
    """A full build in a fresh build dir with the artifact cache off (ccache as configured)."""
    build = top / "cold"
    elapsed, out = doit(["uki"], profile, build, cache, env={"TINYUKI_ARTIFACT_CACHE": "off"})
    return {"seconds": elapsed, "ran": ran(out),
            "uki_sha256": hashlib.sha256((build / "tinyuki.efi").read_bytes()).hexdigest()}


def fake_project(top: Path) -> tuple[str, Path]:
    """The tests' fake kernel as a tarball and a profile using it (musl: the fake tree has no nolibc)."""
    import tarfile

    fake = ROOT / "tests" / "fakekernel"
    tar = top / "linux-9.9.tar"
    with tarfile.open(tar, "w") as t:
        t.add(fake, arcname="linux-9.9")
    sha = hashlib.sha256(tar.read_bytes()).hexdigest()
    profile = top / "fake.toml"
    profile.write_text("\n".join([
        "[source]", f'urls = ["{tar}"]', f'sha256 = "{sha}"', "",
        "[kernel]", 'fragments = ["base", "initramfs", "console", "block", "efi", "size"]', "",
        "[init]", f'sources = ["{ROOT / "init" / "init.c"}"]', 'libc = "musl"', "",
    ]))
    return str(profile), top / "cache"


def table(r: dict[str, Any]) -> str:
    rows = ["| measurement | seconds | note |", "|---|---:|---|"]
    n = r["noop_doit"]
    rows.append(f"| no-op `doit uki` (median of {n['runs']}) | {n['median']:.2f} | min {n['min']:.2f}, "
                f"max {n['max']:.2f}, CPU {n['cpu_median']:.2f} s; no task ran |")
    m = r["noop_make"]
    rows.append(f"| kbuild's no-op `make bzImage`, same build dir (median of {m['runs']}) | {m['median']:.2f} | "
                f"CPU {m['cpu_median']:.2f} s; what the kernel task avoids running |")
    w = r["warm"]
    restored = ", ".join(f"{t} {v['restore_s']:.1f}s" for t, v in w["restored"].items())
    rows.append(f"| fresh build dir, warm artifact cache, to the UKI | {w['seconds']:.1f} | restored: {restored}; "
                f"kbuild ran: {'yes' if w['kbuild_ran'] else 'no'} |")
    c = r["cold"]
    rows.append(f"| cold build of the same steps | {c['seconds']:.1f} | {c['source']} |")
    rows.append(f"| speed-up, warm cache vs cold | {c['seconds'] / max(w['seconds'], 1e-9):.0f}x | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cache", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="debian")
    ap.add_argument("--build-dir", type=Path, default=None, help="an up-to-date build dir (default build/<profile>)")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "cache")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--real", action="store_true", help="also measure a cold real build (minutes)")
    ap.add_argument("--fake", action="store_true", help="use the tests' fake kernel tree in a temporary dir")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

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
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(table(result))
    print(f"\nload average during the no-op runs: {result['noop_doit']['load']:.1f} on {os.cpu_count()} CPUs")
    print(f"\n(results: {args.output})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
