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
import sys
from pathlib import Path

from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain

from tinyuki import packages, scaffold
from tinyuki.config.context import PROJECT_PROFILE
from tinyuki.errors import TinyukiError


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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["init"]:
            return init_command(args[1:])
        if args[:1] == ["doctor"]:
            return packages.doctor(args[1:])
    except TinyukiError as err:
        print(err.render(), file=sys.stderr)
        return 2
    if not (Path.cwd() / PROJECT_PROFILE).is_file() and not any(a.startswith("profile=") for a in args):
        print(f"tinyuki: no {PROJECT_PROFILE} here; building the shipped default profile (tinyuki init makes a"
              " project)", file=sys.stderr)
    return DoitMain(PipelineLoader()).run(args)


if __name__ == "__main__":
    sys.exit(main())
