"""GenRL/<Domain>-v0 ids: registration, Gymnasium's env checker on every id, the vector entry point, kwargs and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import genrl_gym  # noqa: F401  (registers the ids; render guard)
from genrl_gym import model_store
from genrl_gym.registration import ENV_IDS, make_genrl_env
from genrl_gym.utils import CheckpointError, PromptError
from helpers import save_random_clip, save_tiny_model

DMC_IDS = [i for i, d in ENV_IDS.items() if d != "kitchen"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("genrl_registration")
    save_random_clip(root / "prompt.gif", 10)
    out = {d: save_tiny_model(root / f"{d}.pt", d) for d in ENV_IDS.values()}
    out["prompt"] = root / "prompt.gif"
    return out


def test_ids_are_registered_with_json_kwargs() -> None:
    expected = {"GenRL/Walker-v0", "GenRL/Cheetah-v0", "GenRL/Quadruped-v0", "GenRL/Stickman-v0"}
    assert expected <= set(ENV_IDS)
    assert ("GenRL/Kitchen-v0" in ENV_IDS) == (Path(genrl_gym.__file__).parent / "envs" / "kitchen.py").is_file()
    for env_id, domain in ENV_IDS.items():
        spec = gym.spec(env_id)
        assert spec.entry_point == "genrl_gym.registration:make_genrl_env"
        assert spec.vector_entry_point == "genrl_gym.registration:make_genrl_vector_env"
        assert spec.kwargs == {"domain": domain}
        assert spec.max_episode_steps == (140 if domain == "kitchen" else 1000 // 2)
        json.loads(spec.to_json())


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")  # the reward lives in the wrapper: check it
@pytest.mark.parametrize("env_id", DMC_IDS)
def test_gymnasium_check_env(assets: dict[str, Path], env_id: str) -> None:
    domain = ENV_IDS[env_id]
    env = gym.make(env_id, model=str(assets[domain]), prompt=str(assets["prompt"]), episode_frames=40)
    check_env(env)  # includes the step-determinism check (spec.nondeterministic is False) and the render modes
    assert not env.spec.nondeterministic
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert isinstance(reward, float) and reward == info["genrl_score"] and "task_reward" in info
    assert env.spec.kwargs["prompt"] == str(assets["prompt"]) and env.spec.kwargs["model"] == str(assets[domain])
    json.loads(env.spec.to_json())
    env.close()


@pytest.mark.slow  # the kitchen simulates 80 MuJoCo steps per agent step
@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
def test_kitchen_id(assets: dict[str, Path]) -> None:
    if "GenRL/Kitchen-v0" not in ENV_IDS:
        assert not (Path(genrl_gym.__file__).parent / "envs" / "kitchen.py").exists()
        return
    kw: dict[str, Any] = {"model": str(assets["kitchen"]), "prompt": str(assets["prompt"])}
    try:
        import gymnasium_robotics  # noqa: F401
    except ImportError:  # the optional dependency is missing: the error must say how to install it
        with pytest.raises(ImportError, match="pip install"):
            gym.make("GenRL/Kitchen-v0", **kw)
        return
    env = gym.make("GenRL/Kitchen-v0", **kw)
    check_env(env)
    env.close()


@pytest.mark.slow  # a fresh interpreter imports torch, dm_control and SB3-free genrl_gym from scratch
def test_module_prefix_works_without_importing_the_package(assets: dict[str, Path]) -> None:
    code = ("import gymnasium as gym, sys\n"
            "assert 'genrl_gym' not in sys.modules\n"
            f"env = gym.make('genrl_gym:GenRL/Walker-v0', model={str(assets['walker'])!r}, prompt={str(assets['prompt'])!r})\n"
            "env.reset(seed=0)\n"
            "print(type(env.unwrapped).__name__, env.step(env.action_space.sample())[4]['genrl_score'] is not None)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["PixelEnv", "True"]


def test_vector_entry_point_equals_single_envs_in_one_batched_call(assets: dict[str, Path]) -> None:
    n, steps = 3, 9
    kw = {"model": str(assets["walker"]), "prompt": str(assets["prompt"]), "episode_frames": 10}
    venv = gym.make_vec("GenRL/Walker-v0", num_envs=n, **kw)
    assert venv.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    calls: list[int] = []
    encoder = venv.scorer.model.world_model.encoder
    hook = encoder.register_forward_hook(lambda mod, inp, out: calls.append(int(inp[0].shape[0])))
    acts = np.random.default_rng(0).uniform(-1, 1, (steps, n, 6)).astype(np.float32)
    try:
        venv.reset(seed=7)
        calls.clear()
        got, dones = [], []
        for a in acts:
            _, r, term, trunc, info = venv.step(a)
            got.append(r)
            dones.append(term | trunc)
            np.testing.assert_array_equal(info["genrl_score"], r)
            assert info["task_reward"].shape == (n,)
    finally:
        hook.remove()
    assert calls == [n] * steps  # one batched posterior call per vector step, resets included
    got_arr, done_arr = np.asarray(got), np.asarray(dones)
    assert done_arr[4].all() and (got_arr[5] == 0).all()  # 5-step episodes; the next step is the autoreset step
    for i in range(n):
        env = gym.make("GenRL/Walker-v0", **kw)
        env.reset(seed=7 + i)
        expected, restart = [], False
        for a in acts[:, i]:
            if restart:
                env.reset()
                expected.append(0.0)
                restart = False
                continue
            _, r, term, trunc, _ = env.step(a)
            expected.append(r)
            restart = term or trunc
        np.testing.assert_allclose(got_arr[:, i], expected, rtol=1e-5, atol=1e-6)
        env.close()
    venv.close()


def test_episode_length_and_max_episode_steps(assets: dict[str, Path]) -> None:
    kw = {"model": str(assets["walker"]), "prompt": str(assets["prompt"])}
    env = gym.make("GenRL/Walker-v0", episode_frames=6, **kw)  # the env truncates at 3 steps
    env.reset(seed=0)
    assert [env.step(env.action_space.sample())[3] for _ in range(3)] == [False, False, True]
    env.close()
    venv = gym.make_vec("GenRL/Walker-v0", num_envs=2, max_episode_steps=2, **kw)  # TimeLimit inside the vector env
    venv.reset(seed=0)
    assert [bool(venv.step(venv.action_space.sample())[3].all()) for _ in range(2)] == [False, True]
    venv.close()


def test_defaults_model_name_task_and_render(assets: dict[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models").mkdir()
    save_tiny_model(tmp_path / "models" / "walker.pt", "walker", seed=1)
    monkeypatch.setenv("GENRL_HOME", str(tmp_path))
    env = gym.make("GenRL/Walker-v0", prompt=str(assets["prompt"]), render_mode="rgb_array", episode_frames=20)
    assert env.unwrapped.task_spec.task == "stand"  # the task table's first walker task
    assert env.get_wrapper_attr("model").domain == "walker"
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    env.close()
    env = gym.make("GenRL/Walker-v0", prompt=str(assets["prompt"]), task="run", model="walker")
    assert env.unwrapped.task_spec.task == "run"
    env.close()
    model_store.clear_model_cache()


def test_default_prompt_is_the_shipped_clip_or_a_clear_error(assets: dict[str, Path]) -> None:
    from genrl_gym import prompts

    try:
        clip = prompts.example("walker", "stand")
    except PromptError:
        clip = None
    if clip is None:
        with pytest.raises(PromptError, match="prompt="):
            gym.make("GenRL/Walker-v0", model=str(assets["walker"]))
    else:
        env = gym.make("GenRL/Walker-v0", model=str(assets["walker"]))
        assert env.get_wrapper_attr("target").kind == "video"
        env.close()


def test_errors(assets: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kw = {"model": str(assets["walker"]), "prompt": str(assets["prompt"])}
    with pytest.raises(gym.error.NameNotFound, match="Did you mean: `Walker`"):
        gym.make("GenRL/Walkr-v0", **kw)
    with pytest.raises(ValueError, match="Did you mean 'run'"):
        gym.make("GenRL/Walker-v0", task="rnu", **kw)
    with pytest.raises(ValueError, match="Did you mean 'walker'"):
        make_genrl_env("walkr", **kw)
    monkeypatch.setenv("GENRL_HOME", str(tmp_path))
    monkeypatch.setattr(model_store, "PRETRAINED_DIR", tmp_path / "no_pretrained")
    with pytest.raises(CheckpointError, match="genrl pipeline --domain walker --preset cpu"):
        gym.make("GenRL/Walker-v0", prompt=str(assets["prompt"]))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gym.make("GenRL/Walker-v0", model=str(tmp_path / "nope.pt"), prompt=str(assets["prompt"]))
    with pytest.raises(CheckpointError, match="'cheetah' domain and cannot score 'walker'"):
        gym.make("GenRL/Walker-v0", model=str(assets["cheetah"]), prompt=str(assets["prompt"]))
    with pytest.raises(PromptError, match="empty"):
        gym.make("GenRL/Walker-v0", model=str(assets["walker"]), prompt=" ")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(PromptError, match="cannot be read"):
        gym.make("GenRL/Walker-v0", model=str(assets["walker"]), prompt=str(broken))


def test_record_video_writes_an_mp4_of_a_genrl_env(assets: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("moviepy", reason="RecordVideo needs moviepy: the `video` extra (make setup installs it)")
    env = gym.make("GenRL/Walker-v0", model=str(assets["walker"]), prompt=str(assets["prompt"]), render_mode="rgb_array",
                   episode_frames=8)  # 4 steps
    env = gym.wrappers.RecordVideo(env, str(tmp_path / "videos"), episode_trigger=lambda i: True, disable_logger=True)
    env.reset(seed=0)
    done = False
    while not done:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert reward == info["genrl_score"]
        done = terminated or truncated
    env.close()
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 0
    import imageio.v3 as iio

    frames = iio.imread(videos[0], index=None)
    assert frames.shape[0] == 5 and frames.shape[-1] == 3  # the reset frame + 4 steps


def test_the_dev_set_up_installs_what_record_video_needs() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert any(req.startswith("moviepy") for req in extras["video"])
    assert "video" in extras["dev"][0].split("[")[1].rstrip("]").split(",")  # make setup installs .[dev]


def test_an_image_prompt_array_is_an_image_prompt(assets: dict[str, Path]) -> None:
    env = gym.make("GenRL/Walker-v0", model=str(assets["walker"]), prompt=np.zeros((64, 64, 3), np.uint8))
    target = env.get_wrapper_attr("target")
    assert target.kind == "image" and target.prompt == "<image array (64, 64, 3)>"
    env.close()
    with pytest.raises(PromptError, match="ambiguous"):
        gym.make("GenRL/Walker-v0", model=str(assets["walker"]), prompt=np.zeros((3, 64, 64), np.uint8))


def test_a_missing_prompt_uses_the_shipped_clip_and_says_which(assets: dict[str, Path], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    clip = save_random_clip(tmp_path / "pretrained" / "walker" / "prompts" / "run.gif", 10, seed=3)
    monkeypatch.setattr(model_store, "PRETRAINED_DIR", tmp_path / "pretrained")
    with caplog.at_level("WARNING", logger="genrl_gym.registration"):
        env = gym.make("GenRL/Walker-v0", model=str(assets["walker"]), task="run")
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "no prompt given" in caplog.text and f"walker/run clip {clip}" in caplog.text and "prompt=" in caplog.text
    assert env.get_wrapper_attr("prompt") == str(clip) and env.get_wrapper_attr("prompt_is_default") is True
    assert env.get_wrapper_attr("target").kind == "video"
    env.close()
    caplog.clear()
    with caplog.at_level("WARNING", logger="genrl_gym.registration"):
        venv = gym.make_vec("GenRL/Walker-v0", num_envs=2, model=str(assets["walker"]), task="run")
    assert f"walker/run clip {clip}" in caplog.text and venv.prompt == str(clip) and venv.prompt_is_default
    venv.close()
    caplog.clear()
    with caplog.at_level("INFO", logger="genrl_gym.registration"):  # a given prompt is used without a word
        env = gym.make("GenRL/Walker-v0", model=str(assets["walker"]), prompt=str(assets["prompt"]), task="run")
    assert not caplog.records and env.get_wrapper_attr("prompt_is_default") is False
    assert env.get_wrapper_attr("prompt") == str(assets["prompt"])
    env.close()


def test_a_reward_spec_equals_the_keyword_arguments(assets: dict[str, Path]) -> None:
    """``spec=RewardSpec(...)`` and the keyword arguments build the same reward, single and vector entry points alike."""
    from genrl_gym.reward import RewardSpec

    acts = np.random.default_rng(0).uniform(-1, 1, (6, 2, 6)).astype(np.float32)
    spec = RewardSpec(model=str(assets["walker"]), prompt=str(assets["prompt"]), score_kind="cosine", history=9)
    got: list[list[float]] = []
    for kw in ({"spec": spec}, {"model": str(assets["walker"]), "prompt": str(assets["prompt"]), "score_kind": "cosine",
                                "history": 9}):
        env = gym.make("GenRL/Walker-v0", episode_frames=20, **kw)
        assert env.get_wrapper_attr("reward_spec").score_kind == "cosine"
        env.reset(seed=3)
        got.append([env.step(a[0])[1] for a in acts])
        env.close()
        venv = gym.make_vec("GenRL/Walker-v0", num_envs=2, episode_frames=20, seed=3, **kw)
        venv.reset(seed=3)
        np.testing.assert_allclose([venv.step(a)[1][0] for a in acts], got[-1], rtol=1e-5, atol=1e-6)
        venv.close()
    assert got[0] == got[1] and np.std(got[0]) > 0
    with pytest.raises(TypeError, match="score_knd"):
        make_genrl_env("walker", model=str(assets["walker"]), prompt=str(assets["prompt"]), score_knd="cosine")
