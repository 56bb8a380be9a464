"""tinyuki's pipeline: `doit` builds the UKI, `doit boot` boots it.

Variables (name=value after the task names): profile=NAME|PATH (default debian),
build_dir=DIR (default build/<profile>), cache_dir=DIR (default cache), jobs=N.
Compile cache and distcc: ccache=0|1, ccache_remote=URL, distcc_hosts="hostA/4 hostB/8" (tasks/compilecache.py).
Each task is declared in its own module under tasks/; this file only wires them.
"""

from doit import get_var

from tasks import (
    boot,
    cache,
    configure,
    embed,
    extract,
    fetch,
    init,
    initramfs,
    kernel,
    manifest,
    patch,
    repro,
    stats,
    uki,
    verify,
)
from tasks.checker import Sha256Checker
from tasks.context import make_context
from tasks.errors import TinyukiError, exit_with

try:
    CTX = make_context(get_var("profile"), get_var("build_dir"), get_var("cache_dir"), get_var("jobs"))
except TinyukiError as err:
    exit_with(err)
CTX.paths.build.mkdir(parents=True, exist_ok=True)

DOIT_CONFIG = {
    "default_tasks": ["manifest"],
    "check_file_uptodate": Sha256Checker,
    "dep_file": str(CTX.paths.db),
    "backend": "sqlite3",
    "verbosity": 2,
    "action_string_formatting": "new",
}


def task_fetch():
    """Download the kernel tarball from the profile's mirrors (resumable, hashed while streaming)."""
    return fetch.task(CTX)


def task_pin():
    """Print the sha256 of the profile's source, or record it as trusted (pin accept=1)."""
    return verify.pin_task(CTX)


def task_verify():
    """Check sha256, OpenPGP signature / sha256sums.asc / dpkg, then store the tarball by content."""
    return verify.task(CTX)


def task_extract():
    """Unpack the verified tarball safely into a tree shared by its hash."""
    return extract.task(CTX)


def task_patch():
    """Apply the profile's patch series (quilt-style) into a tree keyed by source and patches."""
    return patch.task(CTX)


def task_configure():
    """make tinyconfig + the profile's fragments + olddefconfig, then prove every option held."""
    return configure.task(CTX)


def task_kernel():
    """Build the kernel (-Os, out of tree, reproducible settings); output logged under logs/."""
    return kernel.task(CTX)


def task_init():
    """Compile the profile's program statically (nolibc from the kernel tree, or musl)."""
    return init.task(CTX)


def task_initramfs():
    """Pack /init and friends as a deterministic newc cpio, plus a gzip'd initrd."""
    return initramfs.task(CTX)


def task_embed():
    """Embed the initramfs via CONFIG_INITRAMFS_SOURCE and relink the kernel."""
    return embed.task(CTX)


def task_uki():
    """Assemble the UKI: systemd EFI stub + kernel + cmdline + os-release + uname."""
    return uki.task(CTX)


def task_manifest():
    """Write manifest.json (every artifact's size and sha256, and the inputs) and print a summary."""
    return manifest.task(CTX)


def task_boot():
    """Boot in QEMU and check the program ran: uki=1, disk=FILE, accel=kvm|tcg, kernel=, initrd= (doit help boot)."""
    return boot.task(CTX)


def task_repro():
    """Build twice in different surroundings and compare every stage's sha256 (repro compare=A,B)."""
    return repro.task(CTX)


def task_stats():
    """Print the artifact and compile caches' entries, size, hits and misses."""
    return stats.task(CTX)


def task_cache():
    """List the shared artifact cache: task, key, size and last use of each entry."""
    return cache.list_task(CTX)


def task_cache_prune():
    """Keep the most recently used artifact cache entries within keep=GiB (default 5)."""
    return cache.prune_task(CTX)


def task_bench():
    """Run the benchmarks (python -m bench); bench="boot --runs 3" passes arguments to it."""
    import shlex
    import sys

    return {
        "actions": [[sys.executable, "-m", "bench", *shlex.split(get_var("bench", "") or "")]],
        "uptodate": [False],
        "verbosity": 2,
    }
