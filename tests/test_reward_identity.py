"""The reward engine gives the numbers the unrefactored Gymnasium wrapper gave (tests/data/reward_fixture.json).

The fixture was written by ``python tests/make_reward_fixture.py`` on the code before the reward engine moved into
:mod:`genrl_gym.reward`: the per-step rewards ``GenRLReward`` returned for every shipped model on its shipped clips.
When a shipped model changes, its cases are re-recorded (``--domains <domain>``; each such case records its commit and
model sha256): the walker's in session 19. Here they are recomputed through :func:`genrl_gym.reward.score_episode`
and through the wrapper of today.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import genrl_gym  # noqa: F401  (render guard first)
from genrl_gym.model_store import resolve_model
from genrl_gym.prompts import example, read_video
from genrl_gym.reward import RewardSpec, score_episode
from make_reward_fixture import FIXTURE, cases, cpu_name, episode_actions, sha256_f32, wrapper_rewards

RECORD = json.loads(Path(FIXTURE).read_text())
CASES: list[dict[str, Any]] = RECORD["cases"]


def _id(case: dict[str, Any]) -> str:
    opts = ",".join(f"{k}={v}" for k, v in sorted(case["options"].items()))
    return f"{case['domain']}-{case['prompt_task']}-on-{case['episode_task']}" + (f"-{opts}" if opts else "")


def _check(got: np.ndarray, case: dict[str, Any]) -> None:
    want = np.asarray(case["rewards"], dtype=np.float32)
    assert got.dtype == np.float32 and got.shape == want.shape
    if cpu_name() == RECORD["cpu"]:
        assert sha256_f32(got) == case["sha256"], f"max abs diff {np.abs(got - want).max()}"
    else:
        # Float rounding of the same float32 computation differs between CPU instruction sets (AVX2/AVX-512 kernels of
        # the convolutions and reductions), so another CPU model gets the same rewards up to rounding only.
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_the_fixture_covers_every_shipped_clip() -> None:
    assert [{k: c[k] for k in ("domain", "prompt_task", "episode_task", "options")} for c in CASES] == cases()
    assert all(sha256_f32(np.asarray(c["rewards"], np.float32)) == c["sha256"] for c in CASES)
    # distinct rewards, so that the test can fail: the episodes of one set of options differ, and each walker variant
    # differs from the default on some prompt (not on every one: on the still stand target "phase" finds nothing
    # better than "sequence", and the alignment ties go to the first candidate)
    by_options: dict[str, list[dict[str, Any]]] = {}
    for c in CASES:
        by_options.setdefault(json.dumps(c["options"], sort_keys=True), []).append(c)
    assert all(len({c["sha256"] for c in group}) == len(group) for group in by_options.values())
    default = {(c["domain"], c["prompt_task"]): c["sha256"] for c in by_options["{}"]}
    for key, group in by_options.items():
        if key != "{}":
            assert any(c["sha256"] != default[(c["domain"], c["prompt_task"])] for c in group), key


def test_re_recorded_cases_are_of_the_shipped_models() -> None:
    from genrl_gym.model_store import resolve_model_path
    from genrl_gym.training.export import file_sha256

    for c in CASES:
        if "model_sha256" in c:
            assert c["model_sha256"] == file_sha256(resolve_model_path(c["domain"])[0]), \
                f"the {c['domain']} model changed: `python tests/make_reward_fixture.py --domains {c['domain']}`"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_score_episode_equals_the_recorded_wrapper_rewards(case: dict[str, Any]) -> None:
    domain = case["domain"]
    model = resolve_model(domain, domain=domain)
    frames = read_video(example(domain, case["episode_task"]))
    spec = RewardSpec(model=model, prompt=example(domain, case["prompt_task"]), **case["options"])
    rewards = score_episode(spec, frames, episode_actions(len(frames) - 1, int(model.config.action_dim)))
    assert rewards[0] == 0.0  # the reset frame earns no reward
    _check(rewards[1:], case)


@pytest.mark.parametrize("case", [c for c in CASES if c["domain"] != "walker" or not c["options"]], ids=_id)
def test_the_wrapper_still_gives_the_recorded_rewards(case: dict[str, Any]) -> None:
    _check(wrapper_rewards(case), case)


def test_spec_and_keyword_forms_give_the_same_rewards() -> None:
    """A RewardSpec, keyword overrides of its fields and both at once build the same reward (one set-up for all)."""
    from genrl_gym.reward import reward_spec
    from genrl_gym.wrappers import GenRLReward
    from make_reward_fixture import ReplayEnv

    case = next(c for c in CASES if c["domain"] == "walker" and c["options"] == {"score_kind": "cosine_kl"})
    model = resolve_model("walker", domain="walker")
    frames = read_video(example("walker", case["episode_task"]))
    prompt = example("walker", case["prompt_task"])
    forms = [{"spec": RewardSpec(model=model, prompt=prompt, score_kind="cosine_kl")},
             {"spec": RewardSpec(model=model, score_kind="neg_mse"), "prompt": prompt, "score_kind": "cosine_kl"},
             {"model": model, "prompt": prompt, "score_kind": "cosine_kl"}]
    for kw in forms:
        env = GenRLReward(ReplayEnv(frames, 6, "walker"), domain="walker", **kw)
        assert env.reward_spec.score_kind == "cosine_kl" and env.reward_spec.model is model
        env.reset(seed=0)
        _check(np.asarray([env.step(a)[1] for a in episode_actions(len(frames) - 1, 6)], np.float32), case)
    with pytest.raises(TypeError, match="score_knd"):
        reward_spec(score_knd="cosine")
    with pytest.raises(TypeError, match="score_knd"):
        GenRLReward(ReplayEnv(frames, 6, "walker"), model, prompt, score_knd="cosine")
