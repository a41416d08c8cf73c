"""benchmarks._machine helpers: the reproduce-command builder and repository-relative paths in results."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks._machine import REPO_ROOT, repo_relative, reproduce_command


def test_reproduce_command_flags_lists_and_omitted_options() -> None:
    cmd = reproduce_command("benchmarks.bench_behaviour", ("domain", "walker"), ("tasks", ["stand", "walk"]),
                            ("seeds", [0, 1, 2]), ("seconds", "300"), ("model", None), ("prompt-dir", None),
                            ("align", "phase"), ("overrides", "'{\"learning_rate\": 0.0003}'"), ("clock", "cpu"))
    assert cmd == ("python -m benchmarks.bench_behaviour --domain walker --tasks stand walk --seeds 0 1 2 "
                   "--seconds 300 --align phase --overrides '{\"learning_rate\": 0.0003}' --clock cpu")
    variants = {"base": {}, "lr": {"learning_rate": 3e-4}}
    cmd = reproduce_command("benchmarks.sweep_behaviour", ("domain", "walker"), ("tasks", ["stand"]), ("seeds", [0]),
                            ("cpu-seconds", "300"), ("variants", [f"{k}='{json.dumps(v)}'" for k, v in variants.items()]),
                            ("model", "m.pt"))
    assert cmd == ("python -m benchmarks.sweep_behaviour --domain walker --tasks stand --seeds 0 --cpu-seconds 300 "
                   "--variants base='{}' lr='{\"learning_rate\": 0.0003}' --model m.pt")


def test_paths_inside_the_repository_are_written_relative_to_it(tmp_path: Path) -> None:
    clip = REPO_ROOT / "genrl_gym" / "pretrained" / "walker" / "prompts" / "run.gif"
    assert repo_relative(clip) == "genrl_gym/pretrained/walker/prompts/run.gif"
    assert repo_relative(str(clip)) == "genrl_gym/pretrained/walker/prompts/run.gif"
    outside = tmp_path / "clips" / "run.gif"
    assert repo_relative(str(outside)) == str(outside)  # a file outside the checkout keeps its absolute path


def test_a_shipped_file_of_another_clone_is_written_like_this_clones(tmp_path: Path) -> None:
    other = tmp_path / "second-checkout" / "genrl_gym" / "pretrained" / "walker" / "prompts" / "run.gif"
    assert repo_relative(str(other)) == "genrl_gym/pretrained/walker/prompts/run.gif"
    assert repo_relative(tmp_path / "genrl_gym" / "clips" / "run.gif") == str(tmp_path / "genrl_gym" / "clips" / "run.gif")
