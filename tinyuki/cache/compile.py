"""The compile cache (ccache, local and remote) and distributed compiles (distcc) for kbuild and the init.

The artifact cache skips a stage only when its whole input is unchanged; one
changed config option still reruns the kernel build, and then ccache turns
most of its ~400 compiles into cache hits. ccache and distcc are pure speed:
they never change the bytes built, so nothing here is part of a task's key.

What must hold for that, and for hits across build dirs and machines:
- `base_dir` stays empty: ccache would rewrite absolute source paths into
  relative ones on the compiler's command line, which then escape the
  `-ffile-prefix-map` mappings and change __FILE__ strings in the objects.
- `hash_dir` is off: the build dir is already mapped by -ffile-prefix-map,
  so objects do not depend on it, and ccache hashes only the new side of a
  prefix map. A new build dir then hits the cache of an old one.
- `sloppiness` stays empty: every sloppiness trades exactness for hits.
- `compiler_check` is by content: a reinstalled but identical gcc keeps hits,
  a changed one never reuses old objects.
The source tree is not mapped away by ccache, so hits across machines need
the same tree path, i.e. the same absolute cache_dir (CI runners have that).

Settings come from doit variables or the environment (variable first):
  ccache=0|1|auto          TINYUKI_CCACHE          (auto: on when ccache is installed)
  ccache_remote=URL        TINYUKI_CCACHE_REMOTE   (ccache remote_storage, e.g. redis://host:6379)
  distcc_hosts="a/4 b/8"   TINYUKI_DISTCC_HOSTS    (DISTCC_HOSTS; make -j becomes the sum of slots)
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tinyuki.arch import Arch
from tinyuki.config.context import Context, variable_or_env
from tinyuki.errors import TinyukiError, die
from tinyuki.util.flags import yes_no_auto
from tinyuki.util.fs import atomic_write_json
from tinyuki.util.runner import output

ENV_SWITCH = "TINYUKI_CCACHE"
ENV_REMOTE = "TINYUKI_CCACHE_REMOTE"
ENV_HOSTS = "TINYUKI_DISTCC_HOSTS"
VAR_SWITCH, VAR_REMOTE, VAR_HOSTS = "ccache", "ccache_remote", "distcc_hosts"

# Enough for a few kernel configs of the tiny kind (one is about 40 MB
# compressed), small enough for CI's cache of the whole cache/ dir.
DEFAULT_MAX_SIZE = "1G"

# `ccache --version` and `--print-stats` answer at once; one that does not must not hang a build.
CCACHE_QUERY_TIMEOUT = 60.0

# distcc's own defaults: four jobs per host, two for localhost (distcc(1), "/LIMIT").
DISTCC_DEFAULT_SLOTS = 4
DISTCC_LOCALHOST_SLOTS = 2
HOST_RE = re.compile(r"^(?P<host>@?[A-Za-z0-9_.\-@\[\]:]+?)(?::(?P<port>\d+))?(?:/(?P<limit>[^,]*))?(?:,.*)?$")

# ccache's remote storage schemes and the feature `ccache --version` lists for each.
REMOTE_FEATURES = {"redis": "redis-storage", "redis+unix": "redis+unix-storage",
                   "http": "http-storage", "file": "file-storage"}


@dataclass(frozen=True)
class Request:
    """What the user asked for, before looking at what is installed."""

    ccache: str = "auto"  # "on", "off" or "auto"
    remote: str | None = None
    distcc_hosts: str | None = None


def parse_switch(value: str, where: str) -> str:
    """The ccache switch as "on", "off" or "auto", read as every other yes/no switch is (tinyuki/util/flags.py)."""
    got = yes_no_auto(value, where, hint=f"use {where}=1 to force ccache, 0 to turn it off, or auto")
    return "auto" if got is None else "on" if got else "off"


def request_from(variables: Mapping[str, str | None], environ: Mapping[str, str]) -> Request:
    """doit variables win over the environment; empty values count as unset."""

    def pick(var: str, env: str) -> tuple[str | None, str]:
        return variable_or_env(variables, environ, var, env)

    switch, where = pick(VAR_SWITCH, ENV_SWITCH)
    remote, _ = pick(VAR_REMOTE, ENV_REMOTE)
    hosts, _ = pick(VAR_HOSTS, ENV_HOSTS)
    return Request(ccache=parse_switch(switch, where) if switch is not None else "auto",
                   remote=remote, distcc_hosts=hosts)


def distcc_slots(hosts: str) -> int:
    """The number of jobs a DISTCC_HOSTS list accepts at once: the sum of its hosts' limits."""
    total = 0
    for word in hosts.split():
        if word.startswith("--"):  # --randomize, --localslots=N: options, not hosts
            continue
        if word.startswith("+zeroconf"):
            raise die("distcc_hosts uses +zeroconf, whose number of slots is only known at run time",
                      "list the hosts with their slots instead, e.g. distcc_hosts=\"buildA/8 buildB/8\"")
        m = HOST_RE.match(word)
        if not m:
            raise die(f"distcc host {word!r} is not HOST[:PORT][/LIMIT][,OPTIONS]",
                      "write hosts as distcc(1) does, e.g. distcc_hosts=\"10.0.0.5/8 buildhost:3632/4\"")
        limit = m.group("limit")
        if limit is None:
            host = m.group("host").lstrip("@").rsplit("@", 1)[-1]
            total += DISTCC_LOCALHOST_SLOTS if host == "localhost" else DISTCC_DEFAULT_SLOTS
        elif limit.isdigit() and int(limit) > 0:
            total += int(limit)
        else:
            raise die(f"distcc host {word!r} has limit {limit!r}, not a positive number",
                      "give each host its number of parallel jobs, e.g. host/8")
    if total == 0:
        raise die(f"distcc_hosts={hosts!r} names no host", "list at least one host, e.g. distcc_hosts=\"host/8\"")
    return total


def remote_schemes(remote: str) -> list[str]:
    """The storage schemes of a ccache remote_storage value (space-separated URLs with |attributes)."""
    out = []
    for url in remote.split():
        base = url.split("|", 1)[0]
        if "://" not in base and not base.startswith("redis+unix:"):
            raise die(f"ccache remote storage {redact(url)!r} is not a URL",
                      "use redis://HOST:PORT, http://HOST/PATH or file:///DIR (see ccache's remote_storage)")
        out.append(base.split(":", 1)[0].lower())
    return out


# ccache attributes of a remote storage URL (`|name=value`) that carry credentials.
_SECRET_ATTRIBUTE = re.compile(r"token|password|passwd|secret|auth|key|credential", re.IGNORECASE)


def redact(remote: str) -> str:
    """A remote_storage value fit to print: user info and credential attributes replaced by ***.

    The value itself (with its password or token) goes to ccache only, through
    CCACHE_REMOTE_STORAGE; whatever tinyuki prints or records (the kernel
    stage's line, logs/kernel-compilecache.json, error messages) shows this.
    """
    shown = []
    for url in remote.split():
        base, *attributes = url.split("|")
        scheme, sep, rest = base.partition("://")
        if sep:
            netloc, slash, path = rest.partition("/")
            if "@" in netloc:
                netloc = "***@" + netloc.rsplit("@", 1)[1]
            base = f"{scheme}://{netloc}{slash}{path}"
        attrs = [f"{a.split('=', 1)[0]}=***" if "=" in a and _SECRET_ATTRIBUTE.search(a.split("=", 1)[0]) else a
                 for a in attributes]
        shown.append("|".join([base, *attrs]))
    return " ".join(shown)


def ccache_features(version_text: str) -> set[str]:
    """The storage backends a ccache binary was built with, from its `--version` output."""
    for line in version_text.splitlines():
        if line.startswith("Features:"):
            return set(line.split(":", 1)[1].split())
    return set()


@dataclass(frozen=True)
class CompileSetup:
    """How compiles run: through ccache, distcc, both or neither; and the environment they need."""

    directory: Path  # CCACHE_DIR, under the shared cache dir
    ccache: str | None = None  # the ccache executable, None when off
    remote: str | None = None
    distcc: str | None = None  # the distcc executable, None when off
    hosts: str | None = None

    @property
    def slots(self) -> int:
        return distcc_slots(self.hosts) if self.hosts else 0

    def wrapper(self) -> list[str]:
        """The words put before the compiler. ccache runs distcc itself (CCACHE_PREFIX), only on misses."""
        if self.ccache:
            return ["ccache"]
        if self.distcc:
            return ["distcc"]
        return []

    def compiler(self, cc: str = "gcc") -> list[str]:
        return [*self.wrapper(), cc]

    def make_vars(self, cc: str = "gcc") -> list[str]:
        """kbuild's CC on make's command line (its Makefile sets CC, so the environment cannot).

        HOSTCC stays plain: host tools are few and configure builds them in
        the same dir, so a different HOSTCC there would rebuild them.
        """
        return [f"CC={shlex.join(self.compiler(cc))}"] if self.wrapper() else []

    def kbuild_vars(self, target: Arch) -> list[str]:
        """Everything kbuild's make gets on its command line: the target's ARCH= and CROSS_COMPILE=, then CC.

        For a native x86_64 build that is CC alone, exactly as before there were targets.
        """
        return [*target.make_vars(), *self.make_vars(target.compiler_prefix() + "gcc")]

    def jobs(self, default: int) -> int:
        """make -j: one job per distcc slot, so every remote slot is kept busy."""
        return self.slots if self.distcc else default

    def environ(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        if self.ccache:
            env.update(ccache_environ(self.directory, base))
            if self.remote:
                env["CCACHE_REMOTE_STORAGE"] = self.remote
            if self.distcc:
                env["CCACHE_PREFIX"] = "distcc"
        if self.distcc and self.hosts:
            env["DISTCC_HOSTS"] = self.hosts
        return env

    def describe(self) -> str:
        parts = []
        if self.ccache:
            parts.append(f"ccache in {self.directory}" + (f", remote {redact(self.remote)}" if self.remote else ""))
        if self.distcc:
            parts.append(f"distcc on {self.hosts} ({self.slots} slots)")
        return "; ".join(parts) or "plain gcc (no ccache, no distcc)"


def ccache_environ(directory: Path, base: Mapping[str, str]) -> dict[str, str]:
    """The settings every ccache call of ours uses (compiles and `ccache --print-stats` alike).

    Environment variables override any ccache.conf, so a base_dir or a
    sloppiness set machine-wide cannot leak in and change the objects.
    """
    return {
        "CCACHE_DIR": str(directory),
        "CCACHE_NOHASHDIR": "1",
        "CCACHE_BASEDIR": "",
        "CCACHE_SLOPPINESS": "",
        "CCACHE_COMPILERCHECK": "content",
        "CCACHE_MAXSIZE": base.get("CCACHE_MAXSIZE") or DEFAULT_MAX_SIZE,
    }


def resolve(request: Request, cache_dir: Path, which: Callable[[str], str | None] = shutil.which,
            version: Callable[[str], str] | None = None) -> CompileSetup:
    """Turn a request into a setup, failing clearly when something asked for is not installed.

    `version` returns `ccache --version`'s output; with it, a remote storage
    scheme this ccache was built without is refused up front.
    """
    directory = cache_dir / "ccache"
    ccache = which("ccache") if request.ccache != "off" else None
    if request.ccache == "on" and not ccache:
        raise die("ccache=1 was asked for, but ccache is not installed",
                  "install it (scripts/setup.sh, Debian package ccache) or build without: ccache=0")
    if request.remote:
        if not ccache:
            why = "is turned off" if request.ccache == "off" else "is not installed"
            raise die(f"a remote compile cache ({redact(request.remote)}) needs ccache, which {why}",
                      "install ccache (scripts/setup.sh) and drop ccache=0, or unset TINYUKI_CCACHE_REMOTE")
        schemes = remote_schemes(request.remote)
        if version is not None:
            features = ccache_features(version(ccache))
            for scheme in schemes:
                need = REMOTE_FEATURES.get(scheme)
                if need is None or need not in features:
                    raise die(f"this ccache cannot use {scheme}:// remote storage ({redact(request.remote)})",
                              f"it supports: {', '.join(sorted(features)) or 'none'}; ccache 4.4 or later "
                              "has redis and http storage")
    distcc = None
    if request.distcc_hosts:
        distcc_slots(request.distcc_hosts)  # validate before anything runs
        distcc = which("distcc")
        if not distcc:
            raise die(f"distcc_hosts={request.distcc_hosts!r} was given, but distcc is not installed",
                      "install it (scripts/setup.sh, Debian package distcc) or drop distcc_hosts")
    return CompileSetup(directory=directory, ccache=ccache, remote=request.remote if ccache else None,
                        distcc=distcc, hosts=request.distcc_hosts if distcc else None)


VARIABLES = (VAR_SWITCH, VAR_REMOTE, VAR_HOSTS)


def setup_for(cache_dir: Path, environ: Mapping[str, str] | None = None,
              variables: Mapping[str, str | None] | None = None) -> CompileSetup:
    """The setup for this run: the command line's variables, then the environment, then what is installed."""
    request = request_from(variables or {}, os.environ if environ is None else environ)
    return resolve(request, cache_dir, version=lambda exe: output([exe, "--version"], timeout=CCACHE_QUERY_TIMEOUT))


def for_context(ctx: Context) -> CompileSetup:
    """The setup of this build: its cache dir and the variables given on doit's command line."""
    return setup_for(ctx.paths.cache, variables=ctx.variables)


# ---------------------------------------------------------------- statistics

def parse_print_stats(text: str) -> dict[str, int]:
    """`ccache --print-stats`: one `name<TAB>value` line per counter."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("\t")
        if sep and value.strip().lstrip("-").isdigit():
            out[name.strip()] = int(value)
    return out


def delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Counters of one build: the difference of two snapshots (stats are cumulative per CCACHE_DIR)."""
    return {k: v - before.get(k, 0) for k, v in after.items() if not k.endswith("_timestamp")}


@dataclass(frozen=True)
class Summary:
    hits: int
    misses: int
    local_hits: int
    remote_hits: int
    remote_misses: int
    uncacheable: int

    @property
    def cacheable(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.cacheable if self.cacheable else None

    def line(self) -> str:
        rate = f"{100 * self.hit_rate:.1f} %" if self.hit_rate is not None else "n/a"
        text = f"{self.hits} hits / {self.cacheable} cacheable calls ({rate})"
        if self.remote_hits or self.remote_misses:
            text += f", {self.local_hits} local and {self.remote_hits} remote hits"
        return text


# Counters that are neither hits nor misses: calls ccache passed straight to the compiler.
UNCACHEABLE = ("autoconf_test", "bad_compiler_arguments", "called_for_link", "called_for_preprocessing",
               "compile_failed", "multiple_source_files", "no_input_file", "output_to_stdout",
               "preprocessor_error", "unsupported_code_directive", "unsupported_compiler_option",
               "unsupported_source_language", "unsupported_environment_variable", "could_not_use_modules",
               "could_not_use_precompiled_header", "compiler_produced_stdout", "compiler_produced_empty_output",
               "compiler_produced_no_output", "bad_output_file", "internal_error", "missing_cache_file")


def summarize(counters: Mapping[str, int]) -> Summary:
    """Hits and misses as `ccache -s` counts them (a hit in either mode; remote hits are hits too)."""
    hits = counters.get("direct_cache_hit", 0) + counters.get("preprocessed_cache_hit", 0)
    return Summary(
        hits=hits,
        misses=counters.get("cache_miss", 0),
        local_hits=counters.get("local_storage_hit", 0),
        remote_hits=counters.get("remote_storage_hit", 0),
        remote_misses=counters.get("remote_storage_miss", 0),
        uncacheable=sum(counters.get(k, 0) for k in UNCACHEABLE),
    )


# Written by the kernel stage under logs/: the compile cache's counters for that one build.
REPORT = "kernel-compilecache.json"


def read_counters(setup: CompileSetup, environ: Mapping[str, str] | None = None) -> dict[str, int] | None:
    """ccache's cumulative counters for the setup's CCACHE_DIR; None when ccache is not in use."""
    if not setup.ccache:
        return None
    base = os.environ if environ is None else environ
    env = {**base, **ccache_environ(setup.directory, base)}
    try:
        text = output([setup.ccache, "--print-stats"], env=env, timeout=CCACHE_QUERY_TIMEOUT)
    except TinyukiError:
        return None
    return parse_print_stats(text)


def report(setup: CompileSetup, before: dict[str, int] | None, path: Path, elapsed: float) -> str | None:
    """Keep one build's compile cache counters for `doit stats` and the benchmarks; the line to print."""
    after = read_counters(setup)
    counters = delta(before or {}, after) if after is not None else {}
    summary = summarize(counters)
    atomic_write_json(path, {"setup": setup.describe(), "elapsed_s": round(elapsed, 1), "counters": counters,
                             "hits": summary.hits, "misses": summary.misses, "local_hits": summary.local_hits,
                             "remote_hits": summary.remote_hits, "uncacheable": summary.uncacheable})
    return summary.line() if after is not None else None
