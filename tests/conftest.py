"""Shared test fixtures. Layers are pytest markers: unit, wiring, e2e (see README)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.helpers.daemons import processes

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = ROOT / "tests" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test carries its layer as the directory it lives in: tests/unit, tests/wiring, tests/e2e."""
    for item in items:
        layer = Path(str(item.fspath)).parent.name
        if layer in ("unit", "wiring", "e2e"):
            item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture(autouse=True)
def _tool_versions_asked_afresh() -> Iterator[None]:
    """A test that prepared a build dir must not leave its file of tool versions to the next test."""
    from tinyuki.toolchain import tools

    yield
    tools.remember_versions(None)


DEBIAN_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
# The parts of a kernel tree the fast tests need: nolibc for the init program,
# gen_init_cpio to compare our cpio writer with, merge_config.sh for fragments.
REF_MEMBERS = ("tools/include/nolibc", "usr/gen_init_cpio.c", "scripts/kconfig/merge_config.sh")


@pytest.fixture(scope="session")
def ref_tree() -> Path:
    """A partial kernel tree (nolibc, gen_init_cpio.c, merge_config.sh) from Debian's tarball.

    Unpacked once per tarball version into cache/test-ref-tree/ and reused, so
    the unit tests stay fast after the first run; the unpack is atomic.
    """
    import os
    import shutil
    import subprocess
    import tempfile

    if not DEBIAN_TARBALL.exists():
        pytest.skip(f"{DEBIAN_TARBALL} missing: scripts/setup.sh installs linux-source-6.1")
    st = DEBIAN_TARBALL.stat()
    dest = ROOT / "cache" / "test-ref-tree" / f"{st.st_size}-{int(st.st_mtime)}"
    if not (dest / "tools" / "include" / "nolibc" / "nolibc.h").is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".unpack-"))
        top = "linux-source-6.1"
        subprocess.run(
            ["tar", "-xJf", str(DEBIAN_TARBALL), "-C", str(tmp), "--strip-components=1",
             *[f"{top}/{m}" for m in REF_MEMBERS]],
            check=True,
        )
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    return dest


# ---------------------------------------------------------------- CI runs everything

# Skip reasons that mean "a tool or file this test needs is not here" (redis-server, distccd,
# musl-gcc, the Debian tarball, ...). On a workstation such a test skips; with CI=true it fails:
# CI installs everything (scripts/setup.sh), so a skip there would hide a broken setup.
MISSING_REQUIREMENT = re.compile(r"\bnot installed\b|\bmissing\b|\bneeded\b|\bneeds\b", re.IGNORECASE)


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI, a test skipped for a missing requirement is a failure that says what is missing."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.skipped or hasattr(report, "wasxfail") or not in_ci():
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if MISSING_REQUIREMENT.search(reason):
        report.outcome = "failed"
        report.longrepr = (f"CI=true, so this test may not be skipped: {reason.removeprefix('Skipped: ')}\n"
                           "install what it needs in CI (scripts/setup.sh dev does)")


# ---------------------------------------------------------------- no daemon outlives the suite


def gpg_agent_homes(base: Path) -> list[Path]:
    """The --homedir of every gpg-agent (or keyboxd, dirmngr) whose home is under `base`."""
    homes = []
    for _pid, argv, _zombie in processes():
        if not argv or Path(argv[0]).name not in ("gpg-agent", "keyboxd", "dirmngr") or "--homedir" not in argv:
            continue
        at = argv.index("--homedir") + 1
        home = Path(argv[at]) if at < len(argv) else None
        if home is not None and (home == base or base in home.parents):
            homes.append(home)
    return sorted(set(homes))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the gpg-agents the tests' keyrings started: their homes are under this session's basetemp.

    gpg starts an agent per home on first use and it outlives gpg; test keys
    (tests/helpers/gpgkeys.py) live in pytest's tmp dirs, which pytest keeps
    after the run, so without this each run would leave daemons behind.
    Only this session's basetemp is looked at: other runs' agents are theirs.
    """
    factory = getattr(session.config, "_tmp_path_factory", None)
    base = getattr(factory, "_basetemp", None)
    if base is None or shutil.which("gpgconf") is None:
        return
    for home in gpg_agent_homes(Path(base)):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
