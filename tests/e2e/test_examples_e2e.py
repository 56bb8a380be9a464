"""Every example program (examples/hello-*.toml) built, embedded and booted on one real kernel.

One builder each: C with nolibc, musl and glibc, Go, Rust, and a prebuilt
binary. They share the kernel build (tests/e2e/conftest.py `examples_build`):
for each, only the program, the initramfs and the relink run. Each boots,
prints its line and exits with status 0; then, with HELLO_EXIT=N on the
kernel command line (the kernel hands it to /init as its environment), the
program exits with N, and that is `doit boot`'s exit code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import EXAMPLES, TARBALL, doit, example_profile
from tests.helpers.doit import output, ran, run_dodo, variables
from tinyuki.formats import elf

pytestmark = pytest.mark.skipif(
    not TARBALL.exists(), reason=f"{TARBALL} missing: scripts/setup.sh installs linux-source-6.1"
)

LINES = {"nolibc": "hello from C (nolibc)", "musl": "hello from C (musl)", "glibc": "hello from C (glibc)",
         "go": "hello from Go (go1.", "rust": "hello from Rust", "prebuilt": "hello from C (prebuilt)"}
STATUS = {"nolibc": 3, "musl": 4, "glibc": 5, "go": 6, "rust": 7, "prebuilt": 8}


def boot(paths: dict[str, Path], profile: Path) -> tuple[int, str]:
    proc = run_dodo("boot", "accel=tcg", *variables(profile=profile, build_dir=paths["build"],
                                                     cache_dir=paths["cache"]), timeout=600)
    return proc.returncode, output(proc)


def test_every_example_boots_prints_its_line_and_hands_back_its_status(examples_build: dict[str, Path]) -> None:
    paths, top = examples_build, examples_build["top"]
    config = (paths["build"] / "kernel.config").read_text()
    for option in ("CONFIG_FUTEX=y", "CONFIG_EPOLL=y"):  # the runtimes' fragments held
        assert option in config
    failures = []
    for name in EXAMPLES:
        profile = example_profile(name, top)
        out = doit(dict(paths, profile=profile), ["embed"], timeout=1800)
        # the kernel is shared: only the program, the initramfs and the relink ran
        assert "kernel" not in ran(out), f"{name} rebuilt the kernel:\n{out[-3000:]}"
        program = (paths["build"] / "init" / "init").read_bytes()
        assert elf.elf_problem(program) is None, name
        code, text = boot(paths, profile)
        marker = f"hello: started ({name})"
        if code != 0 or marker not in text or LINES[name] not in text or "exit status: 0" not in text:
            failures.append(f"{name}: exit {code}\n{text[-2500:]}")
            continue
        # the program's failure is doit boot's exit status (the command line reaches no stage but the UKI)
        status = STATUS[name]
        code, text = boot(paths, example_profile(name, top, f"console=ttyS0 panic=-1 HELLO_EXIT={status}"))
        if code != status or f"exiting with status {status}" not in text or f"status {status}" not in text:
            failures.append(f"{name} with HELLO_EXIT={status}: exit {code}\n{text[-2500:]}")
    assert not failures, "\n\n".join(failures)
