"""Collect pixel episodes from (vectorised) Gymnasium envs into an :class:`EpisodeStore`.

Episode boundaries: the vector env runs with ``autoreset_mode=DISABLED`` and this module resets finished
sub-environments itself (``reset(seed=[...], options={"reset_mask": done})``). That avoids both pitfalls of Gymnasium
1.x autoreset: NEXT_STEP mode (the default) spends one extra ``step`` per episode returning the reset observation with
a dummy reward and ignores that step's action, and SAME_STEP mode hides the final observation in ``info``. Manual
resets also let every episode get its own reset seed.

Seeding and resume: episode ``j`` of a given (source tag, task) gets reset seed
``SeedSequence([seed, j]).generate_state(1)[0]``. If the store already holds ``k`` episodes of the same source tag and
task, :func:`collect` collects only ``num_episodes - k`` more, using the smallest episode indices not in the store
(``k, k+1, ...`` after an interruption; the index of a deleted episode when refilling), so an interrupted run picks up
where it stopped and a resumed run does not repeat seeds. The random policy is seeded with ``(seed, k)``. With
``num_envs > 1``, which sub-env runs which episode is deterministic, so a run is reproducible for a given
(seed, num_envs, k). When fewer episodes remain than envs are busy, the idle envs keep stepping (a vector env steps all
its envs together) and their partial episodes are discarded.

One collector per store: :func:`collect` holds the store's ``"episodes"`` writer lock (:meth:`EpisodeStore.writing`)
from its resume accounting to its last save, so a second process collecting into the same store is refused with
:class:`~genrl_gym.data.episodes.StoreLockedError` instead of collecting the same episode indices again. A collector
killed at any point (even inside a write) resumes with the same call and loses nothing it had saved.
"""

from __future__ import annotations

import functools
import multiprocessing
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from genrl_gym.data.episodes import EpisodeStore
from genrl_gym.envs import make_pixel_env
from genrl_gym.utils import DatasetError

__all__ = ["Policy", "RandomPolicy", "SB3Policy", "HandoverPolicy", "CollectStats", "collect", "episode_seed"]


@runtime_checkable
class Policy(Protocol):
    """What :func:`collect` needs from a policy.

    ``source`` is the tag recorded with every episode (and used to resume), e.g. ``"random"``, ``"sb3:PPO:stage1"``.
    """

    source: str

    def reset(self) -> None:
        """Forget any internal state (called once before collection starts)."""

    def act(self, obs: dict[str, np.ndarray], episode_start: np.ndarray) -> np.ndarray:
        """Actions ``float32 [N, A]`` for a batch of observations (dict of arrays ``[N, ...]``, e.g. image uint8
        ``[N, H, W, 3]``, proprio float32 ``[N, P]``); ``episode_start`` bool ``[N]`` marks the first step of an
        episode in each env."""


class RandomPolicy:
    """Uniform random actions in a Box action space.

    :param action_space: the *single-env* Box action space (e.g. ``Box(-1, 1, (A,))``).
    :param seed: seed of the policy's own generator.
    """

    source = "random"

    def __init__(self, action_space: gym.spaces.Space, seed: int = 0) -> None:
        if not isinstance(action_space, gym.spaces.Box) or not np.all(np.isfinite(action_space.low)) \
                or not np.all(np.isfinite(action_space.high)):
            raise ValueError(f"RandomPolicy needs a bounded Box action space, got {action_space}.")
        self.action_space = action_space
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)

    def reset(self) -> None:
        """Restart the random stream from ``seed``."""
        self._rng = np.random.default_rng(self.seed)

    def act(self, obs: dict[str, np.ndarray], episode_start: np.ndarray) -> np.ndarray:
        """Uniform actions ``float32 [N, A]`` with ``N = len(episode_start)``."""
        n = len(episode_start)
        low, high = self.action_space.low, self.action_space.high
        return self._rng.uniform(low, high, size=(n,) + low.shape).astype(np.float32)


class SB3Policy:
    """Drive collection with a Stable-Baselines3 model, e.g. one trained on proprioception while pixels are recorded.

    :param model: an SB3 algorithm (``PPO``, ``SAC``, ... or any object with SB3's ``predict(obs, state, episode_start,
        deterministic)``).
    :param obs_key: which observation the model reads: ``"proprio"`` (float32 ``[N, P]``), ``"image"`` (uint8
        ``[N, H, W, 3]``; SB3 transposes channel-last images itself) or ``None`` for the whole dict
        (``MultiInputPolicy``).
    :param deterministic: use the policy's mean/mode action.
    :param noise_std: std of Gaussian noise added to the actions (in action units), then clipped to the env's bounds;
        0 disables it. Gives diverse data from a single expert.
    :param seed: seed of the noise generator.
    :param tag: appended to the source tag: ``"sb3:<Algo>"`` or ``"sb3:<Algo>:<tag>"``.
    """

    def __init__(self, model: Any, obs_key: str | None = "proprio", *, deterministic: bool = False,
                 noise_std: float = 0.0, seed: int = 0, tag: str | None = None) -> None:
        if not hasattr(model, "predict"):
            raise TypeError(f"SB3Policy needs a model with a predict() method (an SB3 algorithm), got "
                            f"{type(model).__name__}.")
        if noise_std < 0:
            raise ValueError(f"SB3Policy: noise_std must be >= 0, got {noise_std}.")
        self.model = model
        self.obs_key = obs_key
        self.deterministic = bool(deterministic)
        self.noise_std = float(noise_std)
        self.seed = int(seed)
        self.source = f"sb3:{type(model).__name__}" + (f":{tag}" if tag else "")
        self._rng = np.random.default_rng(self.seed)
        self._state: Any = None
        self._low: np.ndarray | None = None
        self._high: np.ndarray | None = None

    def check_spaces(self, observation_space: gym.spaces.Dict, action_space: gym.spaces.Box) -> None:
        """Fail early, naming the mismatch, if the model cannot act in this env (single-env spaces)."""
        model_act = getattr(self.model, "action_space", None)
        if model_act is not None and getattr(model_act, "shape", None) != action_space.shape:
            raise ValueError(f"SB3Policy: the model's action space {model_act} does not match the env's {action_space}.")
        if self.obs_key is not None:
            if self.obs_key not in observation_space.spaces:
                raise ValueError(f"SB3Policy: obs_key {self.obs_key!r} not in the env's observations "
                                 f"{list(observation_space.spaces)} (make the env with proprio=True for 'proprio').")
            model_obs = getattr(self.model, "observation_space", None)
            env_shape = observation_space[self.obs_key].shape
            if model_obs is not None and model_obs.shape is not None and env_shape is not None:
                # SB3 stores image spaces channel-first; accept the transposed channel-last env shape too
                ok = tuple(model_obs.shape) == tuple(env_shape) or (
                    len(env_shape) == 3 and tuple(model_obs.shape) == (env_shape[2], env_shape[0], env_shape[1]))
                if not ok:
                    raise ValueError(f"SB3Policy: the model expects observations of shape {model_obs.shape} but "
                                     f"obs[{self.obs_key!r}] has shape {env_shape}.")
        self._low, self._high = action_space.low, action_space.high

    def reset(self) -> None:
        """Restart the noise stream and drop recurrent state."""
        self._rng = np.random.default_rng(self.seed)
        self._state = None

    def act(self, obs: dict[str, np.ndarray], episode_start: np.ndarray) -> np.ndarray:
        """Model actions ``float32 [N, A]`` (+ optional Gaussian noise), clipped to the env's action bounds."""
        model_obs = obs if self.obs_key is None else obs[self.obs_key]
        actions, self._state = self.model.predict(model_obs, state=self._state, episode_start=episode_start,
                                                  deterministic=self.deterministic)
        actions = np.asarray(actions, dtype=np.float32).reshape(len(episode_start), -1)
        if self.noise_std > 0:
            actions = actions + self._rng.normal(0.0, self.noise_std, size=actions.shape).astype(np.float32)
        if self._low is not None and self._high is not None:
            actions = np.clip(actions, self._low, self._high)
        return actions.astype(np.float32)


class HandoverPolicy:
    """Act with ``first`` for the first ``steps`` agent steps of every episode, then with ``second``; with
    ``then_steps``, keep alternating (``steps`` of ``first``, ``then_steps`` of ``second``, ...).

    E.g. random actions, then an expert: the walker falls into a pose of chance and the expert gets it up again,
    which an expert's own episodes show only once, at the start. A world model needs such states to imagine what a
    clumsy early policy does. Alternating repeats the fall from wherever the expert had got to (upright, mid-stride)
    and the recovery, all episode long.

    :param first: see ``second``
    :param second: policies over the same envs (:class:`RandomPolicy`, :class:`SB3Policy`, ...).
    :param steps: agent steps per episode (per cycle with ``then_steps``) that ``first`` acts (> 0).
    :param then_steps: agent steps per cycle that ``second`` acts before ``first`` takes over again (> 0);
        None: ``second`` acts for the rest of the episode.
    """

    def __init__(self, first: Policy, second: Policy, steps: int, then_steps: int | None = None) -> None:
        if steps <= 0:
            raise ValueError(f"HandoverPolicy: steps must be > 0 (agent steps of the first policy), got {steps}.")
        if then_steps is not None and then_steps <= 0:
            raise ValueError(f"HandoverPolicy: then_steps must be > 0 (agent steps of the second policy per cycle) "
                             f"or None (the second policy acts to the end of the episode), got {then_steps}.")
        self.first, self.second, self.steps = first, second, int(steps)
        self.then_steps = None if then_steps is None else int(then_steps)
        self.source = f"{first.source}>{second.source}@{self.steps}" + (
            "" if self.then_steps is None else f"/{self.then_steps}")
        self._t: np.ndarray | None = None

    def check_spaces(self, observation_space: gym.spaces.Dict, action_space: gym.spaces.Box) -> None:
        """Both policies must be able to act in the env."""
        for policy in (self.first, self.second):
            check = getattr(policy, "check_spaces", None)
            if check is not None:
                check(observation_space, action_space)

    def reset(self) -> None:
        """Reset both policies and the step counters."""
        self.first.reset()
        self.second.reset()
        self._t = None

    def act(self, obs: dict[str, np.ndarray], episode_start: np.ndarray) -> np.ndarray:
        """Actions ``float32 [N, A]``: ``first``'s in envs before their ``steps``-th step, ``second``'s after (per
        cycle of ``steps + then_steps`` with ``then_steps``)."""
        start = np.asarray(episode_start, dtype=bool)
        self._t = np.zeros(len(start), np.int64) if self._t is None else np.where(start, 0, self._t)
        # both act every step, so that each keeps its own state and random stream in step with the episodes
        a, b = self.first.act(obs, start), self.second.act(obs, start)
        phase = self._t if self.then_steps is None else self._t % (self.steps + self.then_steps)
        actions = np.where((phase < self.steps)[:, None], a, b).astype(np.float32)
        self._t = self._t + 1
        return actions


@dataclass
class CollectStats:
    """What one :func:`collect` call did.

    ``frames`` counts stored rows (agent steps + 1 per episode); ``env_steps`` counts every vector-env step of every
    sub-env, including the discarded tail; ``frames_per_second = frames / seconds``.
    """

    source: str
    task: str | None
    episodes_existing: int
    episodes_collected: int
    frames: int
    env_steps: int
    seconds: float
    paths: list[Path] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    task_returns: list[float] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        """Stored rows per wall-clock second."""
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    @property
    def mean_return(self) -> float:
        """Mean env return of the collected episodes (nan if none)."""
        return float(np.mean(self.returns)) if self.returns else float("nan")

    @property
    def mean_task_return(self) -> float:
        """Mean true task return of the collected episodes (nan if none)."""
        return float(np.mean(self.task_returns)) if self.task_returns else float("nan")


def episode_seed(seed: int, index: int) -> int:
    """Reset seed of episode ``index`` of a collection run seeded with ``seed`` (independent streams per index)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0])


def _make_pixel_env(domain: str, task: str, env_kwargs: Mapping[str, Any]) -> gym.Env:
    """Top-level (picklable) factory used by the vector env workers."""
    return make_pixel_env(domain, task, proprio=True, **dict(env_kwargs))


class _EpisodeBuffer:
    """Rows of one running episode in one sub-env."""

    def __init__(self, index: int, seed: int, obs: dict[str, np.ndarray], action_shape: tuple[int, ...]) -> None:
        self.index = index
        self.seed = seed
        self.rows: dict[str, list[Any]] = {k: [np.asarray(v)] for k, v in obs.items()}
        zero = np.zeros(action_shape, np.float32)
        self.rows.update(action=[zero], reward=[np.float32(0)], task_reward=[np.float32(0)],
                         is_first=[np.True_], is_last=[np.False_], is_terminal=[np.False_])

    def add(self, obs: dict[str, np.ndarray], action: np.ndarray, reward: float, task_reward: float,
            terminated: bool, truncated: bool) -> None:
        for k, v in obs.items():
            self.rows[k].append(np.asarray(v))
        self.rows["action"].append(np.asarray(action, np.float32))
        self.rows["reward"].append(np.float32(reward))
        self.rows["task_reward"].append(np.float32(task_reward))
        self.rows["is_first"].append(np.False_)
        self.rows["is_last"].append(np.bool_(terminated or truncated))
        self.rows["is_terminal"].append(np.bool_(terminated))

    def episode(self) -> dict[str, np.ndarray]:
        ep = {k: np.stack(v) for k, v in self.rows.items()}
        if "proprio" in ep:
            ep["proprio"] = ep["proprio"].astype(np.float32)
        return ep


def _preload_forkserver() -> None:
    """Have the forkserver import our env stack once, so that each async worker forks with it already imported.

    Importing ``genrl_gym`` (torch, dm_control) takes seconds per process; with the preload, workers start in
    milliseconds after the first collection of the process. The server never renders, so forking from it is safe.
    Only has an effect before the process's forkserver starts; replaces the default preload list (``["__main__"]``),
    which it keeps.
    """
    multiprocessing.get_context("forkserver").set_forkserver_preload(["__main__", "genrl_gym.envs"])


def _render_settings(venv: gym.vector.VectorEnv) -> dict[str, Any] | None:
    try:
        settings = venv.get_attr("render_settings")[0]  # type: ignore[attr-defined]  # Sync/AsyncVectorEnv have it
    except AttributeError:
        return None
    return dict(settings) if settings is not None else None


def _check_store_matches(store: EpisodeStore, domain: str | None, render_settings: dict[str, Any] | None) -> None:
    meta = store.metadata
    if domain is not None and meta.get("domain") not in (None, domain):
        raise DatasetError(f"{store.root}: this store holds domain {meta['domain']!r}, not {domain!r}; use one store "
                           f"per domain.")
    if render_settings is not None and meta.get("render_settings") not in (None, render_settings):
        raise DatasetError(f"{store.root}: this store was rendered with {meta['render_settings']}, the env renders with "
                           f"{render_settings}; a model must be fed what it was trained on, so use a new store.")


def collect(env_fn: Callable[[], gym.Env] | None = None, *, domain: str | None = None, task: str | None = None,
            env_kwargs: Mapping[str, Any] | None = None, policy: str | Policy = "random",
            store: EpisodeStore | str | Path, num_episodes: int, num_envs: int = 1,
            vectorization: str = "sync", seed: int = 0, source: str | None = None, context: str | None = "forkserver",
            progress: bool = True) -> CollectStats:
    """Run ``policy`` in ``num_envs`` envs until the store holds ``num_episodes`` episodes of this source and task.

    :param env_fn: factory of one single env with dict observations ``{"image": uint8 [H, W, 3], "proprio"?: float32
        [P]}`` and ``info["task_reward"]``; default: ``genrl_gym.envs.make_pixel_env(domain, task, proprio=True,
        **env_kwargs)``. Must be picklable for ``vectorization="async"``.
    :param domain: see ``task``
    :param task: env to build (without ``env_fn``) and labels recorded in the store (with ``env_fn``).
    :param env_kwargs: extra keyword arguments of ``make_pixel_env`` (e.g. ``episode_frames=40``); recorded per episode.
    :param policy: ``"random"`` (:class:`RandomPolicy`) or any :class:`Policy` (e.g. :class:`SB3Policy`).
    :param store: the episode store (or its path; created if missing).
    :param num_episodes: target number of episodes of this (source, task) in the store; existing ones count (resume).
    :param num_envs: parallel sub-envs.
    :param vectorization: ``"sync"`` (``SyncVectorEnv``, one process) or ``"async"`` (``AsyncVectorEnv``, one worker
        process per env).
    :param seed: base seed of episode reset seeds (see module docstring) and of the random policy.
    :param source: tag recorded with each episode and used to resume (default ``policy.source``).
    :param context: multiprocessing start method of the async workers (default ``"forkserver"``, like SB3: forking a
        process that already rendered with EGL is unsafe). Scripts using it need an
        ``if __name__ == "__main__":`` guard.
    :param progress: show a tqdm bar over episodes.

    :return: :class:`CollectStats`.

    :raises StoreLockedError: another process is collecting into the same store (see :meth:`EpisodeStore.writing`).
    """
    if num_episodes < 0 or num_envs < 1:
        raise ValueError(f"collect: need num_episodes >= 0 and num_envs >= 1, got {num_episodes}, {num_envs}.")
    if vectorization not in ("sync", "async"):
        raise ValueError(f"collect: vectorization must be 'sync' or 'async', got {vectorization!r}.")
    env_kwargs = dict(env_kwargs or {})
    if env_fn is None:
        if domain is None or task is None:
            raise ValueError("collect: pass env_fn, or domain and task (e.g. domain='walker', task='stand').")
        env_fn = functools.partial(_make_pixel_env, domain, task, env_kwargs)
    elif env_kwargs:
        raise ValueError("collect: env_kwargs only apply to the default env; bake them into env_fn instead.")
    if not isinstance(store, EpisodeStore):
        store = EpisodeStore(store)
    if isinstance(policy, str) and policy != "random":
        raise ValueError(f"collect: policy must be 'random' or a Policy object (e.g. SB3Policy(model)), got {policy!r}.")

    # cheap checks that need no env first, then resume accounting
    tag = source or (RandomPolicy.source if policy == "random" else getattr(policy, "source", None))
    if not tag:
        raise ValueError("collect: the policy has no `source` tag; pass source='...' (recorded with each episode).")
    # one collector per store: the resume accounting below and the saves must not interleave with another process's
    with store.writing("episodes"):
        return _collect_locked(env_fn, store, policy, tag, domain, task, env_kwargs, num_episodes, num_envs,
                               vectorization, seed, context, progress)


def _collect_locked(env_fn: Callable[[], gym.Env], store: EpisodeStore, policy: str | Policy, tag: str,
                    domain: str | None, task: str | None, env_kwargs: dict[str, Any], num_episodes: int, num_envs: int,
                    vectorization: str, seed: int, context: str | None, progress: bool) -> CollectStats:
    """:func:`collect` once the store's ``"episodes"`` writer lock is held."""
    matching = [i for i in store.episode_info().values() if i.get("source") == tag and i.get("task") == task]
    existing = len(matching)
    remaining = max(0, num_episodes - existing)
    # episode indices (hence reset seeds) not used by an existing episode: a deleted episode is re-collected with its
    # own index instead of repeating a seed that is still in the store
    used = {i.get("episode_index") for i in matching}
    indices = [j for j in range(existing + remaining + len(used)) if j not in used][:remaining]
    stats = CollectStats(source=tag, task=task, episodes_existing=existing, episodes_collected=0, frames=0,
                         env_steps=0, seconds=0.0)
    if remaining == 0:
        return stats

    fns = [env_fn] * num_envs
    if vectorization == "sync":
        venv: gym.vector.VectorEnv = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    else:
        if context == "forkserver":
            _preload_forkserver()
        venv = gym.vector.AsyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.DISABLED, context=context)
    pbar = None
    t0 = time.perf_counter()
    try:
        obs_space, act_space = venv.single_observation_space, venv.single_action_space
        if not isinstance(obs_space, gym.spaces.Dict) or "image" not in obs_space.spaces:
            raise ValueError(f"collect: the env must have dict observations with an 'image' key, got {obs_space}.")
        if not isinstance(act_space, gym.spaces.Box):
            raise ValueError(f"collect: the env must have a Box action space, got {act_space}.")
        render_settings = _render_settings(venv)
        _check_store_matches(store, domain, render_settings)
        if policy == "random":
            policy = RandomPolicy(act_space, seed=episode_seed(seed, existing))
        assert not isinstance(policy, str)
        check = getattr(policy, "check_spaces", None)
        if check is not None:
            check(obs_space, act_space)
        policy.reset()
        meta_kw: dict[str, Any] = {}
        if domain is not None:
            meta_kw["domain"] = domain
        if render_settings is not None:
            meta_kw["render_settings"] = render_settings
        if meta_kw:
            store.update_metadata(**meta_kw)

        if progress:
            label = f"{domain}_{task}" if domain and task else (task or domain or "episodes")
            pbar = tqdm(total=num_episodes, initial=existing, unit="ep", desc=f"collect {label} [{tag}]")

        started = 0
        seeds: list[int | None] = [episode_seed(seed, indices[i]) for i in range(min(num_envs, remaining))]
        seeds += [None] * (num_envs - len(seeds))
        obs, _ = venv.reset(seed=seeds)  # type: ignore[arg-type]  # a list of seeds, one per sub-env
        buffers: list[_EpisodeBuffer | None] = [None] * num_envs
        for i, s in enumerate(seeds):
            if s is not None:
                buffers[i] = _EpisodeBuffer(indices[started], s, {k: v[i] for k, v in obs.items()}, act_space.shape)
                started += 1
        episode_start = np.ones(num_envs, dtype=bool)
        low, high = act_space.low, act_space.high

        while any(b is not None for b in buffers):
            actions = np.asarray(policy.act(obs, episode_start), dtype=np.float32)
            if actions.shape != (num_envs,) + act_space.shape:
                raise ValueError(f"collect: policy returned actions of shape {actions.shape}, expected "
                                 f"{(num_envs,) + act_space.shape}.")
            actions = np.clip(actions, low, high)  # store the action the env actually executed
            obs, reward, terminated, truncated, info = venv.step(actions)
            stats.env_steps += num_envs
            if "task_reward" not in info:
                raise ValueError("collect: the env must report info['task_reward'] (the true task reward) every step; "
                                 "genrl_gym.envs.make_pixel_env does.")
            task_reward = np.asarray(info["task_reward"], dtype=np.float64)
            done = np.logical_or(terminated, truncated)
            for i, buf in enumerate(buffers):
                if buf is None:
                    continue
                buf.add({k: v[i] for k, v in obs.items()}, actions[i], float(reward[i]), float(task_reward[i]),
                        bool(terminated[i]), bool(truncated[i]))
                if done[i]:
                    ep = buf.episode()
                    ep_return = float(ep["reward"].sum())
                    ep_task_return = float(ep["task_reward"].sum())
                    info_rec: dict[str, Any] = {"source": tag, "domain": domain, "task": task, "seed": buf.seed,
                                                "episode_index": buf.index, "return": ep_return,
                                                "task_return": ep_task_return}
                    if env_kwargs:
                        info_rec["env_kwargs"] = env_kwargs
                    path = store.save(ep, info=info_rec)
                    stats.paths.append(path)
                    stats.returns.append(ep_return)
                    stats.task_returns.append(ep_task_return)
                    stats.episodes_collected += 1
                    stats.frames += len(ep["is_first"])
                    buffers[i] = None
                    if pbar is not None:
                        pbar.update(1)
                        pbar.set_postfix(ret=f"{ep_return:.1f}", task_ret=f"{ep_task_return:.1f}")
            episode_start = np.zeros(num_envs, dtype=bool)
            if done.any() and (started < remaining or any(b is not None for b in buffers)):
                # DISABLED autoreset: every finished sub-env must be reset before the next step; those not needed
                # for a new episode (tail of the run) get an unseeded reset and their rows are discarded.
                reset_seeds: list[int | None] = [None] * num_envs
                new_index: dict[int, int] = {}
                for i in map(int, np.flatnonzero(done)):
                    if started < remaining:
                        new_index[i] = indices[started]
                        reset_seeds[i] = episode_seed(seed, indices[started])
                        started += 1
                reset_obs, _ = venv.reset(seed=reset_seeds,  # type: ignore[arg-type]  # one seed per sub-env
                                           options={"reset_mask": done.copy()})
                for k in obs:
                    obs[k][done] = reset_obs[k][done]
                for i, index in new_index.items():
                    buffers[i] = _EpisodeBuffer(index, episode_seed(seed, index), {k: v[i] for k, v in obs.items()},
                                                act_space.shape)
                episode_start = done.copy()
    finally:
        stats.seconds = time.perf_counter() - t0
        if pbar is not None:
            pbar.close()
        venv.close()
    return stats
