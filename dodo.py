"""tinyuki's own clone runs the pipeline as any project does: tinyuki/dodo.py declares it."""

from tinyuki.dodo import *  # noqa: F403
