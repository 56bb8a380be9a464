"""Third-party modules that load on first use.

Every `doit` run imports every stage module, and a run with nothing to do must stay quick (the benchmark's
no-op row, goal ≤ 0.25 s). `requests` alone (urllib3, TLS, charset detection) costs about 45 ms to import
and is needed only when something is downloaded or a remote cache is reached. The module is still bound at
the top of the module that uses it, so imports stay where tests/unit/test_layers.py wants them and a name
that does not exist still fails on first use with the module's own error.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def module(name: str) -> ModuleType:
    """`name`, loaded when one of its attributes is first read (the module itself if already imported)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    lazy = importlib.util.module_from_spec(spec)
    sys.modules[name] = lazy
    loader.exec_module(lazy)
    return lazy
