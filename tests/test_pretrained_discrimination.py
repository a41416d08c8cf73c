"""Prompt discrimination of the shipped walker, stickman and quadruped models (generic checks of every shipped model:
test_pretrained_models).

The discrimination check is the issue's criterion on a small scale: for each task a, the mean GenRL reward (as the
envs compute it) of the target of a's shipped clip on a's clip frames must exceed that on every other clip's frames.
The rewards use the alignment each model records (``phase`` for all three, as their envs use). All three rows pass on
each model, and so does the full held-out matrix (genrl_gym/pretrained/<domain>/REPORT.md). The earlier models passed
only some rows of the held-out matrix.
"""

from __future__ import annotations

import pytest

from genrl_gym.model_store import resolve_model
from genrl_gym.prompts import example, read_video, target_from_prompt
from genrl_gym.reward import RewardSpec, episode_features, score_episode, target_horizon

DOMAINS = ("walker", "stickman", "quadruped")
TASKS = ("stand", "walk", "run")


@pytest.fixture(scope="module", params=DOMAINS)
def domain(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def model(domain: str):  # noqa: ANN201
    return resolve_model(domain)


@pytest.fixture(scope="module")
def matrix(domain: str, model) -> dict[str, dict[str, float]]:  # noqa: ANN001
    # each clip frame's posterior reward features, computed as the envs compute them
    clips = {b: read_video(example(domain, b)) for b in TASKS}
    feats = {b: episode_features(model, clips[b]) for b in TASKS}
    out: dict[str, dict[str, float]] = {}
    align = model.reward_align  # the reward the envs give with this model
    spec = RewardSpec(model=model, align=align)
    for a in TASKS:
        target = target_from_prompt(model, example(domain, a), horizon=target_horizon(align))
        out[a] = {b: float(score_episode(spec, clips[b], target=target, features=feats[b])[1:].astype(float).mean())
                  for b in TASKS}
    return out


def test_the_shipped_model_records_phase_alignment(model) -> None:  # noqa: ANN001
    assert model.reward_align == "phase"


@pytest.mark.parametrize("task", TASKS)
def test_prompt_discrimination_on_shipped_clips(matrix: dict[str, dict[str, float]], task: str) -> None:
    row = matrix[task]
    others = [row[b] for b in TASKS if b != task]
    assert row[task] > max(others), row
