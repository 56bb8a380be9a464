"""The `tinyuki` command: doit's own command line over tinyuki's pipeline, for a project without a dodo.py.

`tinyuki` is `doit` in a project whose dodo.py is `from tinyuki.dodo import *`: the same tasks, the same
variables (`tinyuki boot uki=1`, `tinyuki list`, `tinyuki auto boot`), the builds in the current
directory. Two commands are its own: `tinyuki init` makes a project, `tinyuki doctor` names (and with
--install installs) the Debian packages its profile needs.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain

from tinyuki import packages, scaffold
from tinyuki.config.context import PROJECT_PROFILE, make_context
from tinyuki.errors import TinyukiError, die


class PipelineLoader(ModuleTaskLoader):
    """Loads tinyuki.dodo when doit has read the command line, so its profile= and build_dir= reach it."""

    def __init__(self) -> None:
        super().__init__({})

    def setup(self, opt_values: dict[str, object]) -> None:
        self.namespace = dict(inspect.getmembers(importlib.import_module("tinyuki.dodo")))


def init_command(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="tinyuki init", description="Make a new tinyuki project (never overwrites).")
    ap.add_argument("directory", nargs="?", default=".", help="the project's directory (default: the current one)")
    ap.add_argument("--language", default="c", help=f"the program's language: {', '.join(scaffold.LANGUAGES)}")
    ap.add_argument("--libc", default="nolibc", help=f"for C: {', '.join(scaffold.LIBCS)}")
    ap.add_argument("--beside", action="store_true",
                    help="write into a directory that already holds other files (never overwriting one)")
    args = ap.parse_args(argv)
    project = Path(args.directory).absolute()
    placed = scaffold.write(project, scaffold.plan(args.language, args.libc), beside=args.beside)
    print(scaffold.summary(project, placed))
    return 0


def doctor_command(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="tinyuki doctor",
                                 description="The Debian packages a profile's build and boots need; which are missing.")
    ap.add_argument("settings", nargs="*", help="profile=NAME|PATH (default: ./tinyuki.toml, else debian)")
    ap.add_argument("--install", action="store_true", help="install the missing ones with apt-get")
    ap.add_argument("--suite", action="store_true", help="also what tinyuki's own test suite needs")
    args = ap.parse_args(argv)
    settings = dict(s.split("=", 1) for s in args.settings if "=" in s)
    unknown = [s for s in args.settings if "=" not in s or s.split("=", 1)[0] != "profile"]
    if unknown:
        raise die(f"tinyuki doctor: unknown argument {unknown[0]!r}", "use profile=NAME|PATH, --install, --suite")
    ctx = make_context(settings.get("profile"))
    needs = packages.for_profile(ctx.profile)
    names = [n.package for n in needs]
    if args.suite:
        names += [p for p in packages.SUITE if p not in names]
    missing = packages.missing(names)
    print(f"tinyuki doctor: profile {ctx.profile.name} ({ctx.profile.path}) needs {len(names)} Debian packages")
    for n in needs:
        print(f"  {'missing' if n.package in missing else 'ok     '}  {n.package:28} {n.why}")
    if args.suite:
        extra = [p for p in packages.SUITE if p not in {n.package for n in needs}]
        print(f"  and for the test suite: {', '.join(extra)}")
    if not missing:
        print("tinyuki doctor: everything is installed")
        return 0
    line = packages.install_line(missing)
    print(f"tinyuki doctor: {len(missing)} missing; install them with:\n  {line}")
    if not args.install:
        return 1
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        print("+ " + " ".join([*sudo, *cmd]), flush=True)
        if subprocess.run([*sudo, *cmd], env=env, check=False).returncode != 0:
            raise die(f"tinyuki doctor: {' '.join(cmd[:2])} failed", f"run it yourself: {line}")
    still = packages.missing(missing)
    if still:
        raise die(f"tinyuki doctor: still missing after apt-get: {', '.join(still)}", f"run: {line}")
    print(f"tinyuki doctor: installed {len(missing)} packages")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["init"]:
            return init_command(args[1:])
        if args[:1] == ["doctor"]:
            return doctor_command(args[1:])
    except TinyukiError as err:
        print(err.render(), file=sys.stderr)
        return 2
    if not (Path.cwd() / PROJECT_PROFILE).is_file() and not any(a.startswith("profile=") for a in args):
        print(f"tinyuki: no {PROJECT_PROFILE} here; building the shipped default profile (tinyuki init makes a"
              " project)", file=sys.stderr)
    return DoitMain(PipelineLoader()).run(args)


if __name__ == "__main__":
    sys.exit(main())
