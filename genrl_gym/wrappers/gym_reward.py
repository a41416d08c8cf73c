"""GenRL's trajectory-matching reward on real observations, as Gymnasium wrappers (GenRL paper).

The reward engine is :mod:`genrl_gym.reward`; the wrappers here adapt it to environments:

- :class:`GenRLReward` (a :class:`gymnasium.Wrapper`) scores one pixel env with a
  :class:`~genrl_gym.reward.LatentRewardScorer` of ``B = 1`` stream;
- :class:`GenRLVectorReward` (a :class:`gymnasium.vector.VectorWrapper`) scores a Gymnasium vector env of pixel envs
  (what ``gym.make_vec("GenRL/Walker-v0", num_envs=N)`` builds) with ``B = num_envs`` streams, in every autoreset mode.

The SB3 counterpart, :class:`genrl_gym.wrappers.VecGenRLReward`, works the same way. All of them take the reward's
options as a :class:`~genrl_gym.reward.RewardSpec` (``spec=``), as keyword arguments naming its fields, or both (the
keywords win; :class:`RewardAdapter` is their one set-up), and write the env's true reward to ``info["task_reward"]``
and the score to ``info["genrl_score"]``. How the reward of a step is computed (a growing window of the episode's frames
aligned against the target; the posterior without the GRU): :mod:`genrl_gym.reward.scorer`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from genrl_gym.reward import LatentRewardScorer, RewardSpec, build_scorer, reward_spec
from genrl_gym.utils import CheckpointError

if TYPE_CHECKING:
    from genrl_gym.models import MFWM
    from genrl_gym.prompts import TargetTrajectory

__all__ = ["LatentRewardScorer", "GenRLReward", "GenRLVectorReward", "image_layout", "to_hwc", "env_domain",
           "RewardAdapter", "task_rewards"]


# ----------------------------------------------------------------------------------------------------------------------
# helpers shared with the SB3 wrappers


def image_layout(space: spaces.Space[Any], image_size: int, obs_key: str = "image") -> tuple[str | None, str]:
    """Where the image is in an observation space and how it is laid out.

    :param space: a ``Dict`` space with an ``obs_key`` entry, or a ``Box`` image space (single-env, no batch dim).
    :param image_size: the model's frame size S.
    :return: ``(key or None, "hwc" | "chw")``: ``"hwc"`` for ``(S, S, 3)``, ``"chw"`` for ``(3, S, S)`` (e.g. after SB3's
        ``VecTransposeImage``).
    :raises ValueError: no image entry, wrong dtype or shape (message says what the model needs).
    """
    key: str | None = None
    if isinstance(space, spaces.Dict):
        if obs_key not in space.spaces:
            raise ValueError(f"observation space has no {obs_key!r} entry (keys: {list(space.spaces)}); GenRL rewards need "
                             f"the pixel observation: wrap a genrl_gym.envs.make_pixel_env env or pass obs_key=")
        key, space = obs_key, space.spaces[obs_key]
    if not isinstance(space, spaces.Box) or space.dtype != np.uint8:
        raise ValueError(f"GenRL rewards need uint8 image observations, got {space}")
    s = image_size
    if tuple(space.shape) == (s, s, 3):
        return key, "hwc"
    if tuple(space.shape) == (3, s, s):
        return key, "chw"
    raise ValueError(f"image observations of shape {space.shape} do not match the world model's {s}x{s} RGB frames "
                     f"(expected ({s}, {s}, 3) or (3, {s}, {s})); render the env at image_size={s}")


def to_hwc(images: np.ndarray, layout: str) -> np.ndarray:
    """``uint8 [..., S, S, 3]`` (hwc) or ``[..., 3, S, S]`` (chw) -> ``uint8 [..., S, S, 3]``."""
    images = np.asarray(images)
    return np.moveaxis(images, -3, -1) if layout == "chw" else images


def env_domain(env: Any) -> str | None:
    """The dm_control domain of a genrl-gym pixel env (``"walker"``...), or None when the env does not say."""
    base = getattr(env, "unwrapped", env)
    for attr in ("domain", "domain_name"):
        value = getattr(base, attr, None)
        if isinstance(value, str) and value:
            return value
    spec = getattr(base, "task_spec", None)  # genrl_gym.envs.PixelEnv
    domain = getattr(spec, "domain", None)
    if isinstance(domain, str):
        return domain
    settings = getattr(base, "render_settings", None)
    if isinstance(settings, Mapping) and isinstance(settings.get("domain"), str):
        return settings["domain"]
    return None


def _check_action_space(space: spaces.Space[Any], action_dim: int, domain: str | None) -> None:
    if not isinstance(space, spaces.Box) or space.shape != (action_dim,):
        raise CheckpointError(f"the env's action space {space} does not match the world model's {action_dim}-dim actions"
                              + (f" (env domain {domain!r})" if domain else "") + "; use a model trained on this domain")


def task_rewards(infos: Sequence[dict[str, Any]], rewards: np.ndarray) -> None:
    """SB3 VecEnv infos: keep each env's true reward in ``infos[i]["task_reward"]``, the env's own when it sets one (the
    genrl-gym pixel envs do), else its reward ``rewards[i]``; the key every reward wrapper writes."""
    for i, info in enumerate(infos):
        info.setdefault("task_reward", float(rewards[i]))


class RewardAdapter:
    """What every GenRL reward wrapper holds, and its one set-up (:meth:`_attach_reward`): a mixin of
    :class:`GenRLReward`, :class:`GenRLVectorReward` and :class:`~genrl_gym.wrappers.VecGenRLReward`.

    Attributes: :attr:`reward_spec` (the reward's options; ``spec`` is Gymnasium's ``EnvSpec``), :attr:`model`,
    :attr:`target` (the prompt's target trajectory), :attr:`scorer`, :attr:`prompt` (describes the prompt: the text, the
    file path, or the array's shape) and :attr:`prompt_is_default` (True when ``GenRL/<Domain>-v0`` got no prompt and
    used the task's shipped clip).
    """

    reward_spec: RewardSpec
    model: MFWM
    target: TargetTrajectory
    scorer: LatentRewardScorer
    prompt: Any
    prompt_is_default: bool
    _key: str | None
    _layout: str

    def _attach_reward(self, spec: RewardSpec | None, model: str | os.PathLike[str] | MFWM | None,
                       prompt: str | os.PathLike[str] | np.ndarray | None, overrides: Mapping[str, Any], *,
                       observation_space: spaces.Space[Any], action_space: spaces.Space[Any], num_envs: int,
                       obs_key: str, domain: str | None) -> None:
        """Merge ``spec``, ``model``, ``prompt`` (when not None) and the keyword ``overrides`` into :attr:`reward_spec`
        (:func:`genrl_gym.reward.reward_spec`), load the model (checked against ``domain``), check the observation
        space (image entry and layout) and the action space against it, and build the target and the scorer of
        ``num_envs`` streams.

        :param observation_space: one env's observation space. :param action_space: one env's action space.
        :raises TypeError: an override that is not a :class:`~genrl_gym.reward.RewardSpec` field.
        """
        self.reward_spec = reward_spec(spec, model=model, prompt=prompt, **overrides)
        self.model = self.reward_spec.resolve_model(domain)
        self._key, self._layout = image_layout(observation_space, int(self.model.config.image_size), obs_key)
        _check_action_space(action_space, int(self.model.config.action_dim), domain)
        self.target, self.scorer = build_scorer(self.reward_spec, self.model, num_envs)
        self.prompt = self.target.prompt
        self.prompt_is_default = False


# ----------------------------------------------------------------------------------------------------------------------
# single env


class GenRLReward(RewardAdapter, gym.Wrapper[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray], np.ndarray]):
    """Replace a pixel env's reward with GenRL's trajectory-matching score of the latest step.

    :param env: a genrl-gym pixel env (observation ``{"image": uint8 [64, 64, 3]}``; a Box image space works too).
    :param model: the world model (:attr:`RewardSpec.model <genrl_gym.reward.RewardSpec>`: an MFWM, a checkpoint path
        or a model name); it must belong to the env's domain. Default: the spec's.
    :param prompt: text, a video or an image (:attr:`RewardSpec.prompt <genrl_gym.reward.RewardSpec>`). Default: the
        spec's.
    :param spec: every reward option (:class:`~genrl_gym.reward.RewardSpec`; None: its defaults).
    :param obs_key: the image entry of a Dict observation.
    :param domain: the env's domain (default: read from the env, e.g. ``PixelEnv.task_spec.domain``); checked against the
        model's.
    :param overrides: :class:`~genrl_gym.reward.RewardSpec` fields replacing the spec's: ``vlm``, ``score_kind``,
        ``history``, ``horizon``, ``align``, ``device``, ``track_latent`` (also expose the posterior latent as
        :attr:`latent`; same rewards), ``num_threads``.

    :attr:`prompt` describes the prompt (the text, the file path, or the array's shape).

    ``step`` returns the score as reward (a Python float); ``info["genrl_score"]`` repeats it and ``info["task_reward"]``
    holds the domain's true reward (from the inner env's info, else its reward). The score is a deterministic function of
    the seed and the actions (posterior modes, no sampling).
    """

    def __init__(self, env: gym.Env[Any, Any], model: str | os.PathLike[str] | MFWM | None = None,
                 prompt: str | os.PathLike[str] | np.ndarray | None = None, *, spec: RewardSpec | None = None,
                 obs_key: str = "image", domain: str | None = None, **overrides: Any) -> None:
        super().__init__(env)
        domain = env_domain(env) if domain is None else domain
        self._attach_reward(spec, model, prompt, overrides, observation_space=env.observation_space,
                            action_space=env.action_space, num_envs=1, obs_key=obs_key, domain=domain)
        self._needs_reset = True

    def _image(self, obs: Any) -> np.ndarray:
        img = obs[self._key] if self._key is not None else obs
        return to_hwc(img, self._layout)[None]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env and the latent; the first frame is filtered with ``is_first=True``. Returns ``(obs, info)``."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.scorer.observe(None, self._image(obs), [True])
        self._needs_reset = False
        return obs, info

    def step(self, action: np.ndarray) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env, filter ``(action, new frame)`` and return the score of this step as reward."""
        if self._needs_reset:
            raise gym.error.ResetNeeded("call reset() before step() on a GenRLReward env")
        obs, reward, terminated, truncated, info = self.env.step(action)
        low, high = self.env.action_space.low, self.env.action_space.high  # type: ignore[attr-defined]
        act = np.clip(np.asarray(action, dtype=np.float32), low, high)[None]  # the env applies clipped actions
        score = float(self.scorer.observe(act, self._image(obs), [False])[0])
        info = dict(info)
        info.setdefault("task_reward", float(reward))
        info["genrl_score"] = score
        return obs, score, terminated, truncated, info

    @property
    def latent(self) -> Any:
        """The current posterior latent State ``[1]`` (deter, stoch, logits) with ``track_latent=True``, else None."""
        return self.scorer.state


# ----------------------------------------------------------------------------------------------------------------------
# gymnasium vector env


class GenRLVectorReward(RewardAdapter, VectorWrapper):
    """GenRL rewards for every sub-env of a Gymnasium vector env, in one batched model call per step.

    Works with ``AutoresetMode.NEXT_STEP`` (Gymnasium's default: the step after a done is a reset step, whose reward is
    0.0 and whose frame starts a new latent episode), ``SAME_STEP`` (the final frame comes from ``infos["final_obs"]``,
    the returned frame starts the next episode) and ``DISABLED`` (``reset(options={"reset_mask": m})`` restarts the
    masked streams). ``infos["genrl_score"]`` holds the scores and ``infos["task_reward"]`` the true rewards.

    Arguments as :class:`GenRLReward`.
    """

    def __init__(self, env: VectorEnv, model: str | os.PathLike[str] | MFWM | None = None,
                 prompt: str | os.PathLike[str] | np.ndarray | None = None, *, spec: RewardSpec | None = None,
                 obs_key: str = "image", domain: str | None = None, **overrides: Any) -> None:
        super().__init__(env)
        if domain is None:
            domains = _vector_domains(env)
            domain = domains[0] if len(set(domains)) == 1 and domains else None
        self._attach_reward(spec, model, prompt, overrides, observation_space=env.single_observation_space,
                            action_space=env.single_action_space, num_envs=env.num_envs, obs_key=obs_key, domain=domain)
        self._low = env.single_action_space.low  # type: ignore[attr-defined]
        self._high = env.single_action_space.high  # type: ignore[attr-defined]
        self.autoreset_mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        self._autoreset = np.zeros(env.num_envs, dtype=bool)

    def _images(self, obs: Any) -> np.ndarray:
        img = obs[self._key] if self._key is not None else obs
        return to_hwc(img, self._layout)

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset (all, or the ``options["reset_mask"]`` sub-envs) and restart their latents from the reset frames."""
        mask = None if options is None else options.get("reset_mask")  # read first: SyncVectorEnv pops it
        obs, info = self.env.reset(seed=seed,  # type: ignore[arg-type]  # Gymnasium types seed as int; a list seeds each sub-env
                                   options=None if options is None else dict(options))
        idx = np.arange(self.num_envs) if mask is None else np.nonzero(np.asarray(mask, dtype=bool))[0]
        self.scorer.observe(None, self._images(obs)[idx], np.ones(len(idx), dtype=bool), idx)
        self._autoreset[idx] = False
        return obs, info

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all sub-envs; rewards ``float32 [N]`` are the GenRL scores (0.0 on NEXT_STEP autoreset steps)."""
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        acts = np.clip(np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1), self._low, self._high)
        images = self._images(obs)
        done = np.logical_or(terminated, truncated)
        infos = dict(infos)
        if self.autoreset_mode == AutoresetMode.SAME_STEP and done.any():
            final = infos.get("final_obs")
            if final is None:
                raise RuntimeError("a SAME_STEP vector env finished an episode without infos['final_obs']")
            frames = images.copy()
            for i in np.nonzero(done)[0]:
                frames[i] = to_hwc(final[i][self._key] if self._key is not None else final[i], self._layout)
            scores = self.scorer.observe(acts, frames, np.zeros(self.num_envs, dtype=bool))
            restart = np.nonzero(done)[0]
            self.scorer.observe(None, images[restart], np.ones(len(restart), dtype=bool), restart)
        else:
            # NEXT_STEP: sub-envs that finished last step were reset by this call (their action was ignored)
            first = self._autoreset.copy() if self.autoreset_mode == AutoresetMode.NEXT_STEP else np.zeros_like(done)
            scores = self.scorer.observe(acts, images, first)
            if self.autoreset_mode == AutoresetMode.NEXT_STEP:
                self._autoreset = done.copy()
        task = infos.get("task_reward")
        mask = infos.get("_task_reward")
        true = np.asarray(rewards, dtype=np.float64).copy()
        if task is not None:
            has = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
            true[has] = np.asarray(task, dtype=np.float64)[has]
        infos["task_reward"], infos["_task_reward"] = true, np.ones(self.num_envs, dtype=bool)
        infos["genrl_score"], infos["_genrl_score"] = scores.astype(np.float64), np.ones(self.num_envs, dtype=bool)
        return obs, scores.astype(np.float64), terminated, truncated, infos


def _vector_domains(env: VectorEnv) -> list[str]:
    """Domains of a vector env's sub-envs (empty when they can't be read)."""
    envs = getattr(env.unwrapped, "envs", None)
    if not envs:
        return []
    found = [env_domain(e) for e in envs]
    return [d for d in found if d is not None]

