"""The typed records stages hand each other: round trip, and one clear error when missing or damaged."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tinyuki import records
from tinyuki.errors import TinyukiError
from tinyuki.records import Extracted, Fetched, KernelStamp, Record, Tree, Verified

SHA = "a" * 64
EXAMPLES: list[Record] = [
    Fetched(path="/c/incoming/linux.tar.xz", sha256=SHA, url="https://x/linux.tar.xz", signature=None,
            sha256sums="/c/incoming/sha256sums.asc"),
    Verified(sha256=SHA, path="/c/sha256/aa/" + SHA, filename="linux.tar.xz", trust=["sha256 pin"], package=None,
             package_version=None),
    Extracted(tree="/c/trees/src-" + SHA, source_sha256=SHA),
    Tree(tree="/c/trees/src-" + SHA, source_sha256=SHA, patches_sha256=None, patches=[]),
    KernelStamp(tree="/t", config_sha256=SHA, objects_sha256=SHA, release="6.1.0",
                settings={"[kernel] build_user": "tinyuki"}),
]


@pytest.mark.parametrize("rec", EXAMPLES, ids=lambda r: type(r).__name__)
def test_round_trip(tmp_path: Path, rec: Record) -> None:
    rec.save(tmp_path)
    assert type(rec).load(tmp_path) == rec
    assert type(rec).peek(tmp_path) == rec


@pytest.mark.parametrize("rec", EXAMPLES, ids=lambda r: type(r).__name__)
def test_missing_record_names_the_stage_to_run(tmp_path: Path, rec: Record) -> None:
    cls = type(rec)
    with pytest.raises(TinyukiError, match=rf"run `doit {cls.STAGE}`") as err:
        cls.load(tmp_path)
    assert str(tmp_path / cls.FILE) in err.value.message and "is missing" in err.value.message
    assert cls.peek(tmp_path) is None


@pytest.mark.parametrize("rec", EXAMPLES, ids=lambda r: type(r).__name__)
def test_damaged_records_are_refused(tmp_path: Path, rec: Record) -> None:
    cls = type(rec)
    path = tmp_path / cls.FILE
    data = dataclasses.asdict(rec)
    first = next(iter(data))
    cases = {
        "truncated": json.dumps(data)[:-5],
        "not an object": "[]",
        "a field missing": json.dumps({k: v for k, v in data.items() if k != first}),
        "a field of the wrong type": json.dumps({**data, first: 42}),
    }
    for why, text in cases.items():
        path.write_text(text)
        with pytest.raises(TinyukiError, match="is damaged") as err:
            cls.load(tmp_path)
        assert f"doit {cls.STAGE}" in (err.value.hint or ""), why
        assert cls.peek(tmp_path) is None, why


def test_tree_location_must_be_a_kernel_tree(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "Makefile").write_text("")
    Tree(tree=str(tmp_path / "t"), source_sha256=SHA, patches_sha256=None, patches=[]).save(tmp_path)
    assert Tree.load(tmp_path).location() == tmp_path / "t"
    Tree(tree=str(tmp_path / "gone"), source_sha256=SHA, patches_sha256=None, patches=[]).save(tmp_path)
    with pytest.raises(TinyukiError, match="missing or has no Makefile"):
        Tree.load(tmp_path).location()


def test_every_record_names_its_file_and_stage() -> None:
    classes = [c for c in vars(records).values()
               if isinstance(c, type) and issubclass(c, Record) and c is not Record and c.FILE]
    assert {c.__name__ for c in classes} == {type(r).__name__ for r in EXAMPLES}
    assert len({c.FILE for c in classes}) == len(classes)
    from tinyuki.tasks import PIPELINE  # the stage a record names must exist and write that file

    for c in classes:
        assert c.STAGE in PIPELINE and any(o.path == c.FILE for o in PIPELINE[c.STAGE].outputs), c
