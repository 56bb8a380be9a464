"""The program is never stale: every header the compiler read reaches doit's staleness and the cache key.

Headers beside the sources were the only ones tracked; one found through
`-I` in cflags (or any other include path) was not, so an edit there left an
old program in place, and a fresh build dir restored the old program from the
artifact cache. The compiler's own dependency list is what counts now.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers.doit import run_stages
from tests.helpers.profiles import MINIMAL
from tests.helpers.stages import out, write_tree_record
from tinyuki.config.context import Context, make_context
from tinyuki.tasks import init
from tinyuki.toolchain import program

ROOT = Path(__file__).resolve().parents[2]

PROFILE = MINIMAL + """
[init]
sources = [{source}]
cflags = ["-I{inc}"]
"""

PROGRAM = """\
#include "conf.h"

int main(void)
{
\tstatic const char text[] = CONF "\\n";
\twrite(1, text, sizeof(text) - 1);
\treturn 0;
}
"""


@pytest.fixture(scope="module")
def tree(ref_tree: Path) -> Path:
    assert (ref_tree / program.NOLIBC_HEADER).is_file()
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (Debian: build-essential)")
    return ref_tree


@pytest.fixture
def project(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "prog" / "main.c"
    src.parent.mkdir()
    src.write_text(PROGRAM)
    inc = tmp_path / "include"  # not beside the source: reached only through -I
    inc.mkdir()
    (inc / "conf.h").write_text('#define CONF "one"\n')
    profile = tmp_path / "p.toml"
    profile.write_text(PROFILE.format(source=json.dumps(str(src)), inc=inc))
    return {"src": src, "inc": inc, "profile": profile, "cache": tmp_path / "cache"}


def context(project: dict[str, Path], tree: Path, build: str) -> Context:
    ctx = make_context(str(project["profile"]), build_dir=str(project["profile"].parent / build),
                       cache_dir=str(project["cache"]), root=ROOT)
    ctx.paths.build.mkdir(parents=True, exist_ok=True)
    write_tree_record(ctx.paths.build, tree)
    return ctx


def doit(ctx: Context) -> tuple[int, str]:
    return run_stages(ctx, ("init",), ("init",))


def program_text(ctx: Context) -> bytes:
    return out(ctx, "init").read_bytes()


def test_a_header_reached_through_cflags_reruns_the_stage(project, tree):
    ctx = context(project, tree, "build")
    assert doit(ctx)[0] == 0
    assert b"one\n" in program_text(ctx)
    (project["inc"] / "conf.h").write_text('#define CONF "two"\n')
    assert doit(ctx)[0] == 0
    assert b"two\n" in program_text(ctx) and b"one\n" not in program_text(ctx)


def test_a_second_run_after_the_first_build_does_nothing(project, tree):
    ctx = context(project, tree, "build")
    assert doit(ctx)[0] == 0
    inode = out(ctx, "init").stat().st_ino
    assert doit(ctx)[0] == 0
    assert out(ctx, "init").stat().st_ino == inode


def test_a_fresh_build_dir_never_restores_a_program_built_with_another_header(project, tree):
    first = context(project, tree, "build-a")
    assert doit(first)[0] == 0  # built and stored in the shared artifact cache
    (project["inc"] / "conf.h").write_text('#define CONF "two"\n')
    fresh = context(project, tree, "build-b")
    assert doit(fresh)[0] == 0
    assert b"two\n" in program_text(fresh)
    (project["inc"] / "conf.h").write_text('#define CONF "one"\n')
    again = context(project, tree, "build-c")
    assert doit(again)[0] == 0
    assert b"one\n" in program_text(again) and program_text(again) == program_text(first)


def test_changed_includes_and_a_deleted_header(project, tree):
    ctx = context(project, tree, "build")
    assert doit(ctx)[0] == 0
    # the program now includes another header, and the old one is gone: no error about the old one
    (project["inc"] / "other.h").write_text('#define CONF "other"\n')
    project["src"].write_text(PROGRAM.replace('"conf.h"', '"other.h"'))
    (project["inc"] / "conf.h").unlink()
    assert doit(ctx)[0] == 0
    assert b"other\n" in program_text(ctx)
    # a header the program still includes is deleted: the stage runs again and the compiler says why
    (project["inc"] / "other.h").unlink()
    code, _ = doit(ctx)
    assert code != 0


def test_the_program_bytes_do_not_change(project, tree):
    """The dependency list is a by-product of the compile: the program is the same as without it."""
    ctx = context(project, tree, "build")
    init.build(ctx)
    with_deps = program_text(ctx)
    cmd = program.compile_command(libc="nolibc", sources=[str(project["src"])], output=str(project["src"].parent / "x"),
                                  marker=ctx.profile.init.marker, cflags=ctx.profile.init.cflags, tree=tree, root=ROOT)
    import subprocess

    subprocess.run(cmd, cwd=ROOT, check=True, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C",
                                                  "SOURCE_DATE_EPOCH": str(ctx.profile.kernel.source_date_epoch)})
    assert (project["src"].parent / "x").read_bytes() == with_deps
    assert sorted(p.name for p in out(ctx, "init").parent.iterdir()) == ["init"]
