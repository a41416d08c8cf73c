"""benchmarks.compare end to end on a tiny model: every method trains, is evaluated on the true reward, and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import save_tiny_model

from benchmarks import compare

pytestmark = pytest.mark.slow


def test_compare_runs_every_method_and_resumes(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path / "walker.pt")
    methods = ["genrl_data_free", "sb3_genrl_proprio", "sb3_embedding", "sb3_true", "random"]
    argv = ["--domain", "walker", "--tasks", "stand", "--seeds", "0", "--seconds", "1", "--eval-episodes", "1",
            "--model", str(model), "--preset", "tiny", "--methods", *methods, "--run-dir", str(tmp_path / "run"),
            "--results-dir", str(tmp_path / "res")]
    results = compare.main(argv)
    jobs = [json.loads(line) for line in (tmp_path / "run" / "jobs.jsonl").read_text().splitlines()]
    assert sorted(j["method"] for j in jobs) == sorted(methods)
    rows = results["tasks"]["stand"]["methods"]
    for m in methods:
        r = rows[m]
        assert r["seeds"] == [0] and len(r["per_seed_mean"]) == 1
        # normalised with the task table's constants (random 150, expert 970)
        assert r["normalized_mean"] == pytest.approx((r["mean"] - 150) / (970 - 150))
        if m != "random":
            assert r["steps_per_run"][0] > 0
    md_lines = (tmp_path / "res" / "compare_walker.md").read_text().splitlines()
    assert sum(line.startswith("| stand |") for line in md_lines) == len(methods)  # one long-table row per method
    assert (tmp_path / "res" / "compare_walker.png").stat().st_size > 0

    # a second call finds every job done and trains nothing
    again = compare.main(argv)
    assert len((tmp_path / "run" / "jobs.jsonl").read_text().splitlines()) == len(methods)
    assert again["tasks"] == results["tasks"]


def test_offline_without_data_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        compare.main(["--domain", "walker", "--methods", "genrl_offline", "--run-dir", str(tmp_path)])


def test_torn_job_log_line_is_ignored(tmp_path: Path) -> None:
    log = tmp_path / "jobs.jsonl"
    log.write_text(json.dumps({"task": "stand", "method": "random", "seed": 0, "mean": 1.0}) + "\n{\"task\": \"st")
    assert list(compare.load_jobs(log)) == [("stand", "random", 0)]
