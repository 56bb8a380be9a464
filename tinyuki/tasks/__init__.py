"""The stages of tinyuki's pipeline, one module each, in the order they run.

This list is the pipeline: the doit tasks, the cache keys, what the artifact
cache stores, manifest.json and `doit repro`'s table are all derived from it
(tinyuki/stage.py explains a declaration). To add a stage, write its module
and add one line here.
"""

from __future__ import annotations

from tinyuki.stage import Pipeline
from tinyuki.tasks import (
    configure,
    disk,
    embed,
    extract,
    fetch,
    init,
    initramfs,
    kernel,
    manifest,
    patch,
    sign,
    uki,
    verify,
)

STAGES = (
    fetch.STAGE,
    verify.STAGE,
    extract.STAGE,
    patch.STAGE,
    configure.STAGE,
    init.STAGE,
    initramfs.STAGE,
    kernel.STAGE,  # after the initramfs: its one link can carry the program (tinyuki/tasks/kernel.py)
    embed.STAGE,
    uki.STAGE,
    sign.STAGE,
    disk.STAGE,
)

PIPELINE = Pipeline((*STAGES, manifest.declare(Pipeline(STAGES))))
