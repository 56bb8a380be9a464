"""A built stage is stored by a thread while the next stage runs (artifacts.store_in_background)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.profiles import context
from tinyuki.cache import artifacts
from tinyuki.config.context import Context
from tinyuki.stage import Output, Pipeline, Stage
from tinyuki.util.fs import sha256_bytes


@pytest.fixture(autouse=True)
def _foreground_after() -> Iterator[None]:
    yield
    artifacts.finish_storing()
    artifacts.store_in_background(False)


def demo(ctx_out: list[bytes], name: str = "demo") -> Stage:
    def build(ctx: Context) -> None:
        (ctx.paths.build / f"{name}.bin").write_bytes(ctx_out[0])

    return Stage(name, "A stage that writes one file.", build, outputs=(Output(f"{name}.bin"),), cache=True)


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    c = context(tmp_path, {"urls": ["/nonexistent.tar.xz"], "sha256": "0" * 64}, {"fragments": ["base"]})
    c.paths.build.mkdir(parents=True)
    return c


def entry_of(ctx: Context, stage: Stage) -> dict | None:
    key = json.loads((ctx.paths.keys / f"{stage.name}.json").read_text())["key"]
    return artifacts.store_for(ctx).load(key)


def test_what_is_stored_is_the_output_as_the_stage_left_it(ctx: Context, capsys: pytest.CaptureFixture[str]) -> None:
    artifacts.store_in_background(True)
    content = [b"built by the stage" * 100_000]
    stage = demo(content)
    artifacts.restore_or_build(ctx, stage, Pipeline([stage]))
    (ctx.paths.build / "demo.bin").write_bytes(b"rewritten at once by someone else")  # while the store runs
    artifacts.finish_storing()
    entry = entry_of(ctx, stage)
    assert entry is not None
    assert entry["files"]["demo.bin"]["sha256"] == sha256_bytes(content[0])
    assert "demo: stored in artifact cache" in capsys.readouterr().out


def test_the_next_stored_stage_waits_for_the_one_in_flight_and_both_land(ctx: Context) -> None:
    artifacts.store_in_background(True)
    first, second = demo([b"one" * 1000], "first"), demo([b"two" * 1000], "second")
    pipeline = Pipeline([first, second])
    artifacts.restore_or_build(ctx, first, pipeline)
    artifacts.restore_or_build(ctx, second, pipeline)
    artifacts.finish_storing()
    assert entry_of(ctx, first) is not None and entry_of(ctx, second) is not None
    # and the next run restores both from the cache instead of building
    (ctx.paths.build / "first.bin").unlink()
    broken = demo([b"must not be built"], "first")
    artifacts.restore_or_build(ctx, broken, Pipeline([broken, second]))
    assert (ctx.paths.build / "first.bin").read_bytes() == b"one" * 1000


def test_a_failing_store_warns_and_costs_only_the_entry(ctx: Context, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    artifacts.store_in_background(True)

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(artifacts, "save", broken)
    stage = demo([b"x"])
    artifacts.restore_or_build(ctx, stage, Pipeline([stage]))
    artifacts.finish_storing()
    assert (ctx.paths.build / "demo.bin").read_bytes() == b"x"
    said = capsys.readouterr()
    assert "could not store its outputs in the artifact cache" in said.out + said.err


def test_an_output_the_stage_did_not_write_costs_the_entry_with_a_warning(ctx: Context,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    artifacts.store_in_background(True)

    def forgets(c: Context) -> None:
        pass

    stage = Stage("forgetful", "Declares a file it does not write.", forgets, outputs=(Output("gone.bin"),),
                  cache=True)
    artifacts.restore_or_build(ctx, stage, Pipeline([stage]))
    artifacts.finish_storing()
    said = capsys.readouterr()
    assert "forgetful: could not store its outputs in the artifact cache" in said.out + said.err
    assert "Traceback" not in said.out + said.err
