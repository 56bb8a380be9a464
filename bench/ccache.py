"""Benchmark: what the compile cache saves on a real kernel build.

    python -m bench.ccache [--workdir DIR] [--profile NAME|PATH] [--jobs N]

Three builds of the kernel stage (fetch to kernel), each in a fresh build dir:
1. cold: empty artifact cache, empty ccache (a first build; its objects also
   go to a throwaway Redis on 127.0.0.1 as ccache's remote storage);
2. ccache-warm: the same sources with one config option changed
   (CONFIG_PRINTK_TIME off), so the artifact cache misses and the kernel
   stage really runs: its compiles are ccache hits except where the option
   matters;
3. remote-warm: the cold build's config again, with the local ccache deleted
   and the artifact cache off, so every hit has to come from Redis.
Times are wall clock for the whole `doit kernel` and for the kernel stage's
make. The cold and remote-warm builds must give the same objects: ccache may
only change how fast, never what. Writes bench/results/ccache.json and prints
a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import doit_cmd, serving, timed
from tinyuki.cache import compile as compilecache
from tinyuki.config.context import ROOT
from tinyuki.config.profile import moved_profile_text, profile_path
from tinyuki.errors import TinyukiError, die
from tinyuki.records import KernelStamp
from tinyuki.util import fs as fsutil
from tinyuki.util.fmt import markdown_table

RESULTS = ROOT / "bench" / "results" / "ccache.json"
ONE_OPTION = "# CONFIG_PRINTK_TIME is not set\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes] | None, str | None]:
    exe = shutil.which("redis-server")
    if exe is None:
        print("bench: redis-server is not installed: no remote-warm build", file=sys.stderr)
        return None, None
    port = free_port()
    (workdir / "redis").mkdir(parents=True, exist_ok=True)
    # A server that runs beside the builds, stopped by main: the runner only runs commands to their end.
    proc = subprocess.Popen([exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                             "--dir", str(workdir / "redis")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if serving(proc, port):
        return proc, f"redis://127.0.0.1:{port}"
    raise die(f"redis-server did not answer on 127.0.0.1:{port} within 10 s",
              f"run `{exe} --port {port}` by hand to see why it does not start")


def doit(args: list[str], log: Path, env: dict[str, str]) -> float:
    """`doit ARGS` with its output in `log`; the seconds it took (a failure raises with the log's tail)."""
    return timed(doit_cmd(*args), env=env, log=log, what="bench.ccache: doit")[0]


def one_option_profile(profile: Path, fragment: Path, dest: Path) -> Path:
    """The profile with one more fragment, written elsewhere (its relative paths made absolute)."""
    text = moved_profile_text(profile.read_text(encoding="utf-8"), profile.parent)
    m = re.search(r"^fragments\s*=\s*\[(.*?)\]", text, flags=re.M | re.S)
    if not m:
        raise die(f"no [kernel] fragments list in {profile}",
                  'give a profile with a `fragments = [...]` line in its [kernel] table')
    text = text[:m.end(1)] + f', "{fragment}"' + text[m.end(1):]
    dest.write_text(text, encoding="utf-8")
    return dest


def build_record(name: str, build: Path, wall: float) -> dict[str, Any]:
    """One build's figures: the kernel stage's compile cache report and the objects it compiled."""
    report = fsutil.read_json(build / "logs" / compilecache.REPORT)
    cacheable = report["hits"] + report["misses"]
    return {"build": name, "wall_s": round(wall, 1), "kernel_make_s": report["elapsed_s"],
            "hits": report["hits"], "misses": report["misses"], "remote_hits": report["remote_hits"],
            "hit_rate": round(report["hits"] / cacheable, 4) if cacheable else None,
            "objects_sha256": KernelStamp.load(build).objects_sha256, "setup": report["setup"]}


def table(rows: list[dict[str, Any]], cold: float) -> str:
    cells = []
    for r in rows:
        rate = f"{100 * r['hit_rate']:.1f} %" if r["hit_rate"] is not None else "n/a"
        cells.append([r["build"], f"{r['wall_s']:.0f} s", f"{r['kernel_make_s']:.0f} s",
                      f"{r['kernel_make_s'] / cold:.2f}x", f"{r['hits']}/{r['hits'] + r['misses']} ({rate})",
                      str(r["remote_hits"])])
    return markdown_table(["build", "doit kernel", "kernel make", "vs cold", "ccache hits", "remote hits"], cells,
                          align_right=(1, 2, 3, 5))


def builds(top: Path, profile: Path, jobs: str) -> list[dict[str, Any]]:
    """The cold, ccache-warm and (with redis-server) remote-warm builds, in fresh build dirs under `top`."""
    cache = top / "cache"
    fragment = top / "one-option.config"
    fragment.write_text(ONE_OPTION, encoding="utf-8")
    changed = one_option_profile(profile, fragment, top / "one-option.toml")
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("TINYUKI_CCACHE", "TINYUKI_DISTCC", "CCACHE_", "DISTCC_"))}
    base_env.pop("TINYUKI_ARTIFACT_CACHE", None)
    redis, remote = start_redis(top)
    rows = []
    try:
        common = [f"cache_dir={cache}", f"jobs={jobs}", "ccache=1"]
        remote_var = [f"ccache_remote={remote}"] if remote else []
        wall = doit(["kernel", f"profile={profile}", f"build_dir={top / 'cold'}", *common, *remote_var],
                    top / "cold.log", base_env)
        rows.append(build_record("cold (empty caches)", top / "cold", wall))
        wall = doit(["kernel", f"profile={changed}", f"build_dir={top / 'warm'}", *common],
                    top / "warm.log", base_env)
        rows.append(build_record("ccache-warm, one option changed", top / "warm", wall))
        if remote:
            shutil.rmtree(cache / "ccache")
            wall = doit(["kernel", f"profile={profile}", f"build_dir={top / 'remote'}", *common, *remote_var],
                        top / "remote.log", {**base_env, "TINYUKI_ARTIFACT_CACHE": "off"})
            rows.append(build_record("remote-warm, empty local ccache", top / "remote", wall))
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ccache", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench-ccache")
    parser.add_argument("--profile", default="debian")
    parser.add_argument("--jobs", default=str(len(os.sched_getaffinity(0))))
    opts = parser.parse_args(argv)
    top = opts.workdir.absolute()
    load_start = list(os.getloadavg())  # other work on the machine inflates every time below
    try:
        if shutil.which("ccache") is None:
            raise die("ccache is not installed", "run scripts/setup.sh, or apt-get install ccache")
        profile = profile_path(opts.profile, ROOT)
        if top.exists():
            shutil.rmtree(top)
        top.mkdir(parents=True)
        rows = builds(top, profile, opts.jobs)
    except TinyukiError as e:
        print(e, file=sys.stderr)
        return 1
    cold = rows[0]["kernel_make_s"]
    same = len({r["objects_sha256"] for r in rows if not r["build"].startswith("ccache-warm")}) == 1
    result = {"machine": {"cpus": len(os.sched_getaffinity(0)), "jobs": int(opts.jobs),
                          "loadavg_at_start": load_start, "loadavg_at_end": list(os.getloadavg())},
              "profile": str(profile), "one_option": ONE_OPTION.strip(), "builds": rows,
              "cold_and_remote_objects_identical": same}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write_json(RESULTS, result)
    print(table(rows, cold))
    print(f"\nobjects identical between the cold and the remote-warm build: {same}")
    if not same:
        print("bench: ccache changed the bytes built", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
