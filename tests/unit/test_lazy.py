"""Heavy third-party modules load on first use, so a `doit` run with nothing to do stays quick."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# a submodule each package imports only when it really loads (a lazy module in sys.modules is not loaded)
LOADED_WHEN = {"requests": "requests.exceptions", "urllib3": "urllib3.exceptions", "tqdm": "tqdm.std"}

PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
{setup}
print(json.dumps(sorted(name for name, sub in {loaded}.items() if sub in sys.modules)))
"""


def loaded_after(setup: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup, loaded=LOADED_WHEN), str(ROOT)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_loading_every_stage_and_the_doit_glue_loads_no_download_library() -> None:
    assert loaded_after("import dodo") == []


def test_the_first_use_loads_the_real_module() -> None:
    setup = "from tinyuki.source import download\nassert issubclass(download.requests.Timeout, OSError)"
    assert loaded_after(setup) == ["requests", "urllib3"]
    setup = "from tinyuki.source import download\ndownload.tqdm.tqdm(total=1, disable=True).close()"
    assert loaded_after(setup) == ["tqdm"]


def test_a_missing_module_fails_where_it_is_named() -> None:
    from tinyuki.util import lazy

    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):
        lazy.module("no_such_module_here")


def test_an_imported_module_is_returned_as_it_is() -> None:
    from tinyuki.util import lazy

    assert lazy.module("json") is json
