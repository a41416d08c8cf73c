"""True-task evaluation of any policy on GenRL's pixel environments (the GenRL paper's protocol).

The score a GenRL policy is judged by is the domain's *true* reward, never the trajectory-matching score it was
trained on: the return of an episode is the sum of ``info["task_reward"]`` over a :func:`~genrl_gym.envs.make_pixel_env`
episode (1000 frames = 500 agent steps at action repeat 2, as the paper), and GenRL's normalised score is
``(return - random) / (expert - random)`` with the task table's constants.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from genrl_gym.envs import get_task, make_pixel_env, render_env_kwargs
from genrl_gym.prompts import write_video
from genrl_gym.wrappers import GenRLReward

__all__ = ["evaluate_task_return", "RealityCheck"]


def _act_fn(agent_or_policy: Any, deterministic: bool) -> Callable[[dict[str, np.ndarray], Any, bool], tuple[np.ndarray, Any]]:
    """Uniform ``act(obs, state, episode_start) -> (action [A], state)`` over SB3-style and plain callables."""
    if hasattr(agent_or_policy, "predict"):
        def act(obs: dict[str, np.ndarray], state: Any, start: bool) -> tuple[np.ndarray, Any]:
            action, state = agent_or_policy.predict(obs, state=state, episode_start=np.array([start]),
                                                    deterministic=deterministic)
            return np.asarray(action, dtype=np.float32).reshape(-1), state
        return act
    if callable(agent_or_policy):
        def call(obs: dict[str, np.ndarray], state: Any, start: bool) -> tuple[np.ndarray, Any]:
            return np.asarray(agent_or_policy(obs), dtype=np.float32).reshape(-1), None
        return call
    raise TypeError(f"agent_or_policy must have .predict(obs, state, episode_start, deterministic) (an SB3 model or "
                    f"GenRLAgent) or be a callable obs -> action; got {type(agent_or_policy).__name__}")


def evaluate_task_return(agent_or_policy: Any, domain: str, task: str, n_episodes: int = 3,
                         seeds: Sequence[int] | None = None, video_path: str | os.PathLike[str] | None = None,
                         episode_frames: int = 1000, *, deterministic: bool = True,
                         env_kwargs: dict[str, Any] | None = None, reward_prompt: Any = None,
                         reward_model: Any = None) -> dict[str, Any]:
    """Episode returns of a policy under the task's true reward.

    :param agent_or_policy: a :class:`~genrl_gym.agents.GenRLAgent`, any SB3 model (``predict`` with recurrent
        ``state``/``episode_start``), or a callable ``obs dict -> action [A]``. It receives ``{"image": uint8 [S, S, 3]}``.
    :param domain: e.g. ``"walker"``. :param task: e.g. ``"stand"`` (see ``genrl_gym.envs.TASKS``).
    :param n_episodes: episodes when ``seeds`` is None (seeds ``0 .. n_episodes-1``).
    :param seeds: one episode per seed (``env.reset(seed=s)``); overrides ``n_episodes``.
    :param video_path: if given, the first episode's frames are written there (``.gif``/``.mp4``), atomically.
    :param episode_frames: frames per episode (1000 = the paper's DMC episodes).
    :param deterministic: passed to ``predict`` (GenRL evaluates the actor's mean).
    :param env_kwargs: extra :func:`make_pixel_env` arguments. By default a GenRLAgent's world-model render settings
        (image size, camera, render quality) are used, so that the model is fed what it was trained on.
    :param reward_prompt: if given, the env is wrapped in :class:`~genrl_gym.wrappers.GenRLReward` with this prompt and
        the GenRL reward the policy earns in the real env is measured beside the true return (so that it can be set
        against the reward the agent saw in imagination). The alignment is the agent's (else the model's).
    :param reward_model: the world model of that reward; default the agent's ``world_model``.
    :return: ``{"domain", "task", "seeds": [..], "returns": [..] (per seed), "mean", "std", "lengths" (agent steps),
        "normalized": [..] | None, "normalized_mean": float | None, "random_score", "expert_score",
        "episode_frames", "video_path": str | None, "genrl_reward_per_step": [..] | None (mean GenRL reward per agent
        step of each episode, with ``reward_prompt``)}``. Normalised scores are given only for ``episode_frames == 1000``
        (the table's constants are 1000-frame returns) and tasks that have constants.
    """
    spec = get_task(domain, task)
    seeds = list(range(n_episodes)) if seeds is None else [int(s) for s in seeds]
    if not seeds:
        raise ValueError("evaluate_task_return needs at least one episode: n_episodes >= 1 or a non-empty seeds list")
    world_model = getattr(agent_or_policy, "world_model", None)
    kwargs = {**render_env_kwargs(getattr(world_model, "render_settings", None)), **(env_kwargs or {})}
    act = _act_fn(agent_or_policy, deterministic)
    env: gym.Env[Any, Any] = make_pixel_env(domain, task, episode_frames=episode_frames, **kwargs)
    if reward_prompt is not None:
        reward_model = world_model if reward_model is None else reward_model
        if reward_model is None:
            raise ValueError("reward_prompt needs a world model: pass reward_model= (a policy without .world_model)")
        env = GenRLReward(env, reward_model, reward_prompt, align=getattr(agent_or_policy, "align", None), domain=domain)
    returns, lengths, frames, genrl = [], [], [], []
    try:
        for i, seed in enumerate(seeds):
            obs, _ = env.reset(seed=seed)
            state, start, done, total, steps, score = None, True, False, 0.0, 0, 0.0
            if i == 0 and video_path is not None:
                frames.append(obs["image"])
            while not done:
                action, state = act(obs, state, start)
                obs, _, terminated, truncated, info = env.step(action)
                total += float(info["task_reward"])
                score += float(info.get("genrl_score", 0.0))
                steps += 1
                start, done = False, bool(terminated or truncated)
                if i == 0 and video_path is not None:
                    frames.append(obs["image"])
            returns.append(total)
            lengths.append(steps)
            genrl.append(score / max(steps, 1))
    finally:
        env.close()
    written = None
    if video_path is not None:
        written = str(write_video(np.stack(frames).astype(np.uint8), Path(video_path)))
    normalized = None
    if episode_frames == 1000 and spec.random_score is not None and spec.expert_score is not None:
        normalized = [spec.normalize(r) for r in returns]
    return {
        "domain": domain, "task": task, "seeds": seeds, "returns": returns, "mean": float(np.mean(returns)),
        "std": float(np.std(returns)), "lengths": lengths, "normalized": normalized,
        "normalized_mean": None if normalized is None else float(np.mean(normalized)),
        "random_score": spec.random_score, "expert_score": spec.expert_score, "episode_frames": episode_frames,
        "video_path": written, "genrl_reward_per_step": genrl if reward_prompt is not None else None,
    }


class RealityCheck(BaseCallback):
    """Show model exploitation while GenRLAgent learns: the GenRL reward per step its policy earns in imagination
    beside the GenRL reward per step the same policy earns from the same prompt in the real env, and its true return.

    Every ``every`` updates it runs the policy (the actor's mean) for ``episodes`` episodes of ``episode_frames``
    frames in the task's pixel env wrapped in :class:`~genrl_gym.wrappers.GenRLReward` with the agent's prompt and
    alignment, and logs (TensorBoard and stdout tables):

    - ``reality/imagined_reward_per_step``: mean of the imagined GenRL reward per step over the updates since the last
      check (what the actor is optimising);
    - ``reality/real_reward_per_step``: mean GenRL reward per agent step of the real episodes;
    - ``reality/real_to_imagined``: their ratio (1 = the model's imagination holds in the real env; near 0 = the
      policy exploits the model);
    - ``reality/true_return``: mean true task return of the real episodes, scaled to 1000 frames
      (``reality/normalized`` too, for 1000-frame episodes of tasks with table constants).

    Each check is kept in :attr:`rows`. The episodes are real env steps (render, world-model filter, reward), so choose
    ``every`` and ``episode_frames`` to keep the overhead small next to the updates.

    With ``keep_best=True`` it also selects a policy, as SB3's ``EvalCallback`` keeps its best model: the policy of
    the check with the highest *real GenRL reward per step* (the prompt's reward, never the true reward) is kept, and
    when training ends the agent's policy (actor, critics, return statistics; not the optimiser state) is set back to
    it. Why: in imagination the actor can drift into the world model's errors, where the imagined reward keeps rising
    while the real one falls (walker stand, benchmarks/results/behaviour_walker.md); the real episodes of the checks
    see that. :attr:`best` records the chosen check. The updates still learn in imagination only, but the choice uses
    real env episodes (the checks' cost counts in the training time).

    :param domain: e.g. ``"walker"`` (default: the agent's world model's domain).
    :param task: the task whose true reward is reported, e.g. ``"stand"``.
    :param every: updates between checks (and one check at the end of training).
    :param episodes: real episodes per check (seeds ``seed .. seed + episodes - 1``).
    :param episode_frames: frames per episode (1000 = the paper's evaluation episodes).
    :param seed: first episode seed.
    :param prompt: the prompt of the real env's GenRL reward (default: the agent's ``prompt``; a loaded agent keeps
        only its target, so pass the prompt it was trained from).
    :param keep_best: at the end of training, restore the policy of the check with the highest real GenRL reward.
    """

    def __init__(self, task: str, *, domain: str | None = None, every: int = 500, episodes: int = 1,
                 episode_frames: int = 500, seed: int = 0, prompt: Any = None, keep_best: bool = False,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        if every <= 0 or episodes <= 0 or episode_frames <= 0:
            raise ValueError(f"every={every}, episodes={episodes} and episode_frames={episode_frames} must be positive")
        self.task, self.domain = task, domain
        self.every, self.episodes, self.episode_frames, self.seed = int(every), int(episodes), int(episode_frames), seed
        self.prompt = prompt
        self.keep_best = bool(keep_best)
        self.rows: list[dict[str, float]] = []
        #: the check whose policy was kept (``keep_best``): its row; None before the first check
        self.best: dict[str, float] | None = None
        self._best_policy: dict[str, Any] | None = None
        self._imagined: list[float] = []
        self._last_check = -1

    def _on_training_start(self) -> None:
        if self.prompt is None and getattr(self.model, "prompt", None) is None:
            raise ValueError("RealityCheck needs the agent's prompt for the real env's GenRL reward: this agent has "
                             "none (a loaded agent keeps only its target); pass RealityCheck(..., prompt=<the prompt>)")

    def _on_step(self) -> bool:
        metrics = self.locals.get("metrics") or {}
        if "reward_mean" in metrics:
            self._imagined.append(float(metrics["reward_mean"]))
        if self.num_timesteps % self.every == 0:
            self.check()
        return True

    def _on_training_end(self) -> None:
        if self._imagined and self._last_check != self.num_timesteps:
            self.check()
        if self._best_policy is not None and self.best is not None:  # set together, by keep_best checks only
            self.model.policy.load_state_dict(self._best_policy)
            if self.verbose:
                print(f"RealityCheck: kept the policy of update {self.best['updates']:.0f} (real GenRL reward per "
                      f"step {self.best['real_reward_per_step']:.3f})")

    def check(self) -> dict[str, float]:
        """Run the real episodes now, log and return the row (``updates``, the four ``reality/`` values)."""
        agent: Any = self.model  # a GenRLAgent (world_model, prompt)
        domain = self.domain or str(agent.world_model.domain)
        ev = evaluate_task_return(agent, domain, self.task, seeds=range(self.seed, self.seed + self.episodes),
                                  episode_frames=self.episode_frames,
                                  reward_prompt=agent.prompt if self.prompt is None else self.prompt)
        imagined = float(np.mean(self._imagined)) if self._imagined else float("nan")
        real = float(np.mean(ev["genrl_reward_per_step"]))
        row = {"updates": float(self.num_timesteps), "imagined_reward_per_step": imagined,
               "real_reward_per_step": real, "real_to_imagined": real / imagined if imagined > 0 else float("nan"),
               "true_return": ev["mean"] * 1000.0 / self.episode_frames}
        if ev["normalized_mean"] is not None:
            row["normalized"] = float(ev["normalized_mean"])
        for key, value in row.items():
            if key != "updates":
                self.logger.record(f"reality/{key}", value)
        self.logger.dump(self.num_timesteps)  # as SB3's EvalCallback: the check is written with its update count
        self.rows.append(row)
        if self.keep_best and (self.best is None or real > self.best["real_reward_per_step"]):
            self.best = row  # ties keep the earlier policy
            self._best_policy = copy.deepcopy(agent.policy.state_dict())
        self._imagined, self._last_check = [], self.num_timesteps
        return row
