"""CI carries only what pays: the verified tarballs, artifact entries and ccache, pruned; never cache/trees/."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "build.yml"


def load() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def cache_steps(job: dict) -> list[dict]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/cache")]


def test_the_cached_paths_are_the_ones_that_pay_and_never_the_trees():
    wf = load()
    paths = wf["env"]["CACHE_PATHS"].split()
    assert paths == ["cache/sha256", "cache/locks", "cache/artifacts", "cache/ccache"]
    assert not any(p == "cache" or p.startswith("cache/trees") for p in paths)
    for name, job in wf["jobs"].items():
        steps = cache_steps(job)
        assert [s["uses"] for s in steps] == ["actions/cache/restore@v5", "actions/cache/save@v5"], name
        for s in steps:
            assert s["with"]["path"] == "${{ env.CACHE_PATHS }}", name


def test_each_job_prunes_before_it_saves_and_falls_back_to_the_default_branch():
    for name, job in load()["jobs"].items():
        runs = [str(s.get("run", "")) + str(s.get("uses", "")) for s in job["steps"]]
        prune = next(i for i, r in enumerate(runs) if r.startswith("scripts/ci-cache.sh"))
        save = next(i for i, r in enumerate(runs) if r.startswith("actions/cache/save"))
        assert prune < save, name
        restore = cache_steps(job)[0]["with"]
        keys = restore["restore-keys"].strip().splitlines()
        assert keys[0].endswith("${{ github.head_ref || github.ref_name }}-"), name
        assert keys[-1].endswith("${{ github.event.repository.default_branch }}-"), name
        assert restore["key"].startswith(keys[0]) and "github.run_id" in restore["key"], name


def test_fork_pull_requests_only_read_the_remote_cache():
    env = load()["env"]
    assert env["TINYUKI_ARTIFACT_REMOTE"] == "${{ secrets.TINYUKI_ARTIFACT_REMOTE }}"
    assert "head.repo.fork && 'ro'" in env["TINYUKI_ARTIFACT_REMOTE_MODE"]
