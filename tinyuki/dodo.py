"""tinyuki's pipeline: `doit` builds the UKI, `doit boot` boots it.

A project's dodo.py is `from tinyuki.dodo import *`; doit runs it in the project's
directory, which is where the builds go (the `tinyuki` command loads this module the same way).
Variables (name=value after the task names): profile=NAME|PATH (default: the project's
tinyuki.toml, else the shipped debian profile), build_dir=DIR (default build/<profile>),
cache_dir=DIR (default: ~/.cache/tinyuki, or $XDG_CACHE_HOME/tinyuki; cache/ in tinyuki's own clone), jobs=N.
Compile cache and distcc: ccache=0|1, ccache_remote=URL, distcc_hosts="hostA/4 hostB/8" (tinyuki/cache/compile.py).
Remote artifact cache: artifact_remote=URL, artifact_remote_mode=rw|ro, artifact_signing_key=PATH,
artifact_trusted_keys=PATH (tinyuki/cache/remote.py).
The stages are declared in tasks/ (their order in tasks/__init__.py); the other
commands live in cli/. This module only wires them to doit.
"""

from doit import get_var

from tinyuki.cache.compile import VARIABLES
from tinyuki.cache.remote import VARIABLES as REMOTE_VARIABLES
from tinyuki.cli import bench, boot, cache, flash, keys, pin, repro, stages, stats, summary
from tinyuki.cli.actions import exit_with, stop_like_ctrl_c
from tinyuki.cli.checkers import Sha256Checker
from tinyuki.config.context import make_context, prepare_dirs
from tinyuki.errors import TinyukiError
from tinyuki.tasks import PIPELINE

stop_like_ctrl_c()  # a killed run still records what finished (tinyuki/cli/actions.py)
try:
    CTX = make_context(get_var("profile"), get_var("build_dir"), get_var("cache_dir"), get_var("jobs"),
                       variables={name: get_var(name) for name in (*VARIABLES, *REMOTE_VARIABLES)})
    prepare_dirs(CTX)
except TinyukiError as err:
    exit_with(err)

__all__ = ["DOIT_CONFIG", "task_commands", "task_pipeline"]

DOIT_CONFIG = {
    "default_tasks": ["summary"],
    "check_file_uptodate": Sha256Checker,
    "dep_file": str(CTX.paths.db),
    "backend": "sqlite3",
    "verbosity": 2,
    "action_string_formatting": "new",
    "sort": "definition",  # `doit list` shows the stages in pipeline order
}


def task_pipeline():
    """The pipeline's stages, in order (tasks/__init__.py)."""
    for stage in PIPELINE:
        yield stages.task_dict(CTX, stage, PIPELINE)


def task_commands():
    """Commands that are not stages: booting, checking reproducibility, the caches, benchmarks."""
    yield summary.task(CTX)
    yield boot.task(CTX)
    yield flash.task(CTX)
    yield pin.task(CTX)
    yield keys.task(CTX)
    yield repro.task(CTX)
    yield stats.task(CTX)
    yield cache.list_task(CTX)
    yield cache.prune_task(CTX)
    yield bench.task(CTX)
