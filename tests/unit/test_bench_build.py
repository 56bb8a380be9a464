"""The build benchmark's pure parts and its loops, with doit and make simulated (no kernel is built)."""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench import build as bbuild
from tinyuki.errors import TinyukiError
from tinyuki.formats import kconfig

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- the program's change

def test_every_nonce_is_new_and_fits_a_c_string() -> None:
    tags = {bbuild.nonce() for _ in range(100)}
    assert len(tags) == 100
    assert all(bbuild.TAG_RE.match(t) for t in tags)


def test_one_line_change_puts_the_tag_into_the_string() -> None:
    text = (ROOT / "init" / "init.c").read_text()
    changed = bbuild.one_line_change(text, "ab12cd34")
    diff = [(a, b) for a, b in zip(text.splitlines(), changed.splitlines(), strict=True) if a != b]
    assert len(diff) == 1 and "powering off ab12cd34" in diff[0][1]
    # two tags: two different programs, so neither run can be a cache hit of the other
    assert bbuild.one_line_change(text, "1") != bbuild.one_line_change(text, "2")


@pytest.mark.parametrize("tag", ['x"', "a\\n", "%s", "é"])
def test_a_tag_that_would_break_the_c_string_is_refused(tag: str) -> None:
    with pytest.raises(ValueError):
        bbuild.one_line_change('puts("powering off");\n', tag)


def fake_ctx(tmp: Path, profile_text: str, program: str = 'int main(void) { puts("powering off"); }\n',
             name: str = "debian") -> Any:
    """Just what the benchmark's file handling reads of a Context: the root, the profile and its source."""
    root = tmp / "root"
    (root / "init").mkdir(parents=True)
    (root / "configs" / "profiles").mkdir(parents=True)
    src = root / "init" / "init.c"
    src.write_text(program)
    (root / "init" / "helper.h").write_text("#define X 1\n")
    prof = root / "configs" / "profiles" / f"{name}.toml"
    prof.write_text(profile_text)
    return SimpleNamespace(root=root, profile=SimpleNamespace(path=prof, name=name,
                                                               init=SimpleNamespace(sources=[src])))


PROFILE = '[kernel]\nfragments = ["base", "initramfs"]\n\n[init]\nsources = ["../../init/init.c"]\n'  # from its dir


def test_changed_profile_points_at_a_changed_copy(tmp_path: Path) -> None:
    ctx = fake_ctx(tmp_path, PROFILE)
    work = tmp_path / "work"
    work.mkdir()
    prof = bbuild.changed_profile(ctx, work, lambda t: bbuild.one_line_change(t, "t1"))
    assert prof.name == "debian.toml"  # the same profile name: the same build dir and artifact names
    assert tomllib.loads(prof.read_text())["init"]["sources"] == [str(work / "init.c")]
    assert "powering off t1" in (work / "init.c").read_text()
    assert (work / "helper.h").is_file()
    # a later run rewrites only the program: the profile stays, the binary is new
    bbuild.changed_program(ctx, work, lambda t: bbuild.one_line_change(t, "t2"))
    assert "powering off t2" in (work / "init.c").read_text()
    assert ctx.profile.init.sources[0].read_text().count("powering off t") == 0  # the repository's file is untouched


def test_changed_profile_refuses_a_program_it_cannot_change(tmp_path: Path) -> None:
    ctx = fake_ctx(tmp_path, PROFILE, program="int main(void) { return 0; }\n")
    with pytest.raises(TinyukiError, match="powering off"):
        bbuild.changed_profile(ctx, tmp_path, bbuild.one_line_change)


# ---------------------------------------------------------------- the rebuild loop, simulated

class FakeBuild:
    """doit and kbuild's make as the rebuild benchmark sees them: what each run writes, and which ran."""

    def __init__(self, build: Path, original: bytes, stale: bool = False, miss_back: bool = False) -> None:
        self.build, self.original, self.stale, self.miss_back = build, original, stale, miss_back
        self.calls: list[str] = []
        self.programs: list[bytes] = []
        self.write(original)

    def write(self, program: bytes) -> None:
        (self.build / "initramfs.cpio").write_bytes(b"070701" + program)
        (self.build / "tinyuki.efi").write_bytes(b"MZ" + hashlib.sha256(program).digest())

    def __call__(self, cmd: Sequence[Any], **kw: Any) -> float:
        words = [str(c) for c in cmd]
        profile = next((w.split("=", 1)[1] for w in words if w.startswith("profile=")), None)
        if profile is None:
            self.calls.append("make")
            return 2.0
        prof = Path(profile)
        if prof.parent.name.startswith("tinyuki-bench-init-"):
            program = (prof.parent / "init.c").read_bytes()
            self.programs.append(program)
            if not self.stale:
                self.write(program)
            self.calls.append("doit changed")
            return 3.0
        self.write(self.original + (b"x" if self.miss_back and self.calls else b""))
        self.calls.append("doit real")
        return 0.5


def rebuild_ctx(tmp: Path) -> Any:
    ctx = fake_ctx(tmp, '[init]\nsources = ["../../init/init.c"]\n')
    build = tmp / "build"
    (build / "kbuild" / "usr").mkdir(parents=True)
    ctx.paths = SimpleNamespace(build=build, kbuild=build / "kbuild")
    ctx.arch = SimpleNamespace(image_target="bzImage")
    return ctx


def simulate(monkeypatch: pytest.MonkeyPatch, tmp: Path, **kw: bool) -> tuple[Any, FakeBuild]:
    ctx = rebuild_ctx(tmp)
    fake = FakeBuild(ctx.paths.build, ctx.profile.init.sources[0].read_bytes(), **kw)
    monkeypatch.setattr(bbuild, "_timed", fake)
    monkeypatch.setattr(bbuild, "kbuild_make", lambda c, tree, *targets: (["make", *targets], {}))
    monkeypatch.setattr(bbuild.Tree, "load", lambda build: SimpleNamespace(location=lambda: tmp / "tree"))
    monkeypatch.setattr(bbuild.PIPELINE, "path",
                        lambda c, name: c.paths.build / {"uki": "tinyuki.efi"}.get(name, name))
    return ctx, fake


def test_rebuild_makes_a_new_program_every_run_and_times_the_hit_apart(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    ctx, fake = simulate(monkeypatch, tmp_path)
    new, hit = bbuild.rebuild(ctx, 3, tmp_path / "log")
    assert fake.calls == ["doit real", *["doit changed", "make", "doit real"] * 3, "doit real"]
    assert len(set(fake.programs)) == 3  # never the same change twice: never a cache hit
    assert new["name"] == bbuild.REBUILD and new["tinyuki"]["median"] == 3.0 and new["ratio"] == 1.5
    assert hit["name"] == bbuild.REBUILD_HIT and hit["tinyuki"]["median"] == 0.5 and hit["ratio"] == 0.25
    assert new["baseline_what"] == hit["baseline_what"] == "kbuild relink of a new initramfs (`make bzImage vmlinux`)"


def test_a_rebuild_whose_change_did_not_reach_the_uki_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ctx, fake = simulate(monkeypatch, tmp_path, stale=True)
    with pytest.raises(TinyukiError, match="did not reach"):
        bbuild.rebuild(ctx, 2, tmp_path / "log")
    assert fake.calls[-1] == "doit real"  # the build is put back even so


def test_going_back_must_give_the_original_uki(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ctx, _ = simulate(monkeypatch, tmp_path, miss_back=True)
    with pytest.raises(TinyukiError, match="did not give the UKI"):
        bbuild.rebuild(ctx, 1, tmp_path / "log")


# ---------------------------------------------------------------- the no-op rows

def test_noop_rows_keep_the_default_name() -> None:
    ctx = SimpleNamespace(profile=SimpleNamespace(name="debian"))
    other = SimpleNamespace(profile=SimpleNamespace(name="fast-boot"))
    assert bbuild.noop_name(ctx, "debian") == "no-op build"  # older results compare with this row
    assert bbuild.noop_name(other, "debian") == "no-op build (fast-boot)"


def test_a_profile_whose_noop_fails_gets_a_row_with_its_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[tuple[str, tuple[str, ...]]] = []

    def noop(ctx: Any, runs: int, log: Path, *, name: str, targets: Sequence[str] = ()) -> dict[str, Any]:
        seen.append((name, tuple(targets)))
        if ctx.profile.name == "arm64":
            raise TinyukiError("arm64 is not built")
        return bbuild._case(name, [0.2], [4.0], "no-op `make bzImage`")

    monkeypatch.setattr(bbuild, "noop", noop)
    ctxs = [SimpleNamespace(profile=SimpleNamespace(name=n), arch=SimpleNamespace(image_target=t))
            for n, t in (("small", "bzImage"), ("arm64", "Image"))]
    rows = bbuild.noops(ctxs, "debian", 3, tmp_path / "log", {"small": ["embed"]})  # type: ignore[arg-type]
    assert seen == [("no-op build (small)", ("embed",)), ("no-op build (arm64)", ())]
    assert rows[0]["ratio"] == 0.05 and rows[1]["tinyuki"] is None and rows[1]["error"] == "arm64 is not built"
    assert rows[1]["baseline_what"] == "no-op `make Image`"


# ---------------------------------------------------------------- config changes (goal 5)

CONFIG = "CONFIG_A=y\n# CONFIG_TIMERFD is not set\nCONFIG_PRINTK=y\nCONFIG_S=\"x\"\n"


def test_flipped_changes_the_option_either_way() -> None:
    parsed = kconfig.parse_config(CONFIG)
    assert bbuild.flipped(parsed, "CONFIG_TIMERFD") == "CONFIG_TIMERFD=y"
    assert bbuild.flipped(parsed, "CONFIG_A") == "# CONFIG_A is not set"
    assert bbuild.flipped(parsed, "CONFIG_HIDDEN") == "CONFIG_HIDDEN=y"  # absent is off


def test_restated_asks_for_what_the_config_has() -> None:
    parsed = kconfig.parse_config(CONFIG)
    assert bbuild.restated(parsed) == "CONFIG_PRINTK=y"
    assert bbuild.restated(parsed, "CONFIG_S") == 'CONFIG_S="x"'
    assert bbuild.restated(parsed, "CONFIG_TIMERFD") == "# CONFIG_TIMERFD is not set"
    for symbol in ("CONFIG_PRINTK", "CONFIG_S", "CONFIG_TIMERFD"):  # merged over the config: no change
        line = bbuild.restated(parsed, symbol)
        assert kconfig.parse_config(bbuild.apply_line(CONFIG, line)) == parsed


def test_apply_line_edits_the_config_as_a_user_would() -> None:
    on = bbuild.apply_line(CONFIG, "CONFIG_TIMERFD=y")
    assert kconfig.parse_config(on)["CONFIG_TIMERFD"] == "y" and on.count("TIMERFD") == 1
    off = bbuild.apply_line(CONFIG, "# CONFIG_A is not set")
    assert "# CONFIG_A is not set\n" in off and "CONFIG_A=" not in off
    assert bbuild.apply_line(CONFIG, "# CONFIG_NEW is not set").endswith("# CONFIG_NEW is not set\n")
    assert bbuild.wanted("CONFIG_X=y") == "y" and bbuild.wanted("# CONFIG_X is not set") == kconfig.NOT_SET
    with pytest.raises(ValueError):
        bbuild.apply_line(CONFIG, "TIMERFD=y")


def test_a_fragment_carries_its_nonce() -> None:
    a, b = (bbuild.fragment_text(["CONFIG_TIMERFD=y"], bbuild.nonce()) for _ in range(2))
    assert a != b  # a new hash: neither configure nor the kernel can come from the artifact cache
    reqs = kconfig.parse_fragment(a, "bench")
    assert [(r.symbol, r.value) for r in reqs] == [("CONFIG_TIMERFD", "y")]


@pytest.mark.parametrize("name", ["debian", "small", "fast-boot", "arm64", "kernel.org"])
def test_with_fragment_adds_one_to_every_shipped_profile(name: str) -> None:
    raw = (ROOT / "configs" / "profiles" / f"{name}.toml").read_text()
    out = bbuild.with_fragment(raw, Path("/tmp/x/bench-1.config"))
    before, after = tomllib.loads(raw), tomllib.loads(out)
    assert after["kernel"]["fragments"] == [*before["kernel"]["fragments"], "/tmp/x/bench-1.config"]
    after["kernel"]["fragments"].pop()
    assert after == before  # nothing else changed


def test_with_fragment_refuses_what_it_cannot_edit() -> None:
    with pytest.raises(TinyukiError):
        bbuild.with_fragment("[kernel]\n", Path("/f"))
    with pytest.raises(TinyukiError):
        bbuild.with_fragment('[kernel]\nfragments = ["a"]\n[other]\nfragments = ["b"]\n', Path("/f"))


def test_fragment_profile_keeps_the_profile_name(tmp_path: Path) -> None:
    ctx = fake_ctx(tmp_path, PROFILE)
    prof = bbuild.fragment_profile(ctx, tmp_path, ["CONFIG_TIMERFD=y"], "n1")
    assert prof.name == "debian.toml"
    frag = Path(tomllib.loads(prof.read_text())["kernel"]["fragments"][-1])
    assert frag.read_text().startswith("# tinyuki build benchmark n1\n")


def test_ran_stages_reads_doit() -> None:
    out = "-- fetch\n.  configure\nconfigure: ok\n-- kernel\n.  manifest\n"
    assert bbuild.ran_stages(out) == ["configure", "manifest"]


def test_config_rows_keep_going_after_one_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def change(ctx: Any, c: bbuild.ConfigChange, runs: int, log: Path) -> dict[str, Any]:
        if c.symbol == "CONFIG_BLK_DEV_LOOP":
            raise TinyukiError("does not fit")
        return bbuild._case(c.name, [10.0], [9.0], "kbuild")

    monkeypatch.setattr(bbuild, "config_change", change)
    monkeypatch.setattr(bbuild, "fragment_edit", lambda ctx, runs, log: bbuild._case(bbuild.FRAGMENT_EDIT, [5.5],
                                                                                      [5.0], "configure"))
    rows = bbuild.config_rows(SimpleNamespace(), 1, tmp_path / "log")  # type: ignore[arg-type]
    assert [r["name"] for r in rows] == [*(c.name for c in bbuild.CONFIG_CHANGES), bbuild.FRAGMENT_EDIT]
    assert rows[0]["error"] == "does not fit" and rows[1]["ratio"] == pytest.approx(1.111, abs=1e-3)
    assert all(re.search(r"CONFIG_\w+", c.name) for c in bbuild.CONFIG_CHANGES)
