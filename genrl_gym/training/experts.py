"""Task-solving data sources for MFWM pre-training: SB3 policies trained on proprioception.

A world model cannot imagine what its data never showed, and random actions almost never make a walker
stand, walk or run. GenRL's datasets therefore mix exploration data with the replay of task-solving agents.
We do the same on a CPU budget: train an SB3 policy (PPO, or SAC where PPO plateaus, e.g. walker run) per
in-distribution task on the domain's
*proprioceptive* observations (physics only, no rendering: fast), keep checkpoints from several stages of
training (a mediocre and a good policy show different behaviours), and later collect *pixel* episodes with
each checkpoint (plus action noise) through :func:`genrl_gym.data.collect` and :class:`ExpertPolicy`.

Observation normalisation (SB3 ``VecNormalize``) is saved with every stage and applied by
:class:`ExpertPolicy`, so a stage acts in a pixel env exactly as it did in training.
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from genrl_gym.utils import atomic_write

log = logging.getLogger(__name__)


EXPERT_ALGOS = ("ppo", "sac")


@dataclass
class ExpertConfig:
    """How one task's expert is trained (SB3 PPO or SAC on proprioception)."""

    total_steps: int = 1_000_000
    """Agent steps of training (action repeat 2: twice as many physics frames)."""
    algo: str = "ppo"
    """``ppo`` (about 1,000-2,300 steps/s on 2 cores; plateaus on hard tasks such as walker run at a true return near
    260) or ``sac`` (about 460 steps/s at one thread with the default 2 updates per 8 env steps; off-policy, so far
    more return per step)."""
    stages: tuple[float, ...] = (0.2, 0.5, 1.0)
    """Fractions of ``total_steps`` at which a checkpoint (a data-collection stage) is kept."""
    n_envs: int = 8
    seed: int = 0
    ppo_kwargs: dict[str, Any] = field(default_factory=lambda: {
        "n_steps": 512, "batch_size": 256, "n_epochs": 10, "learning_rate": 3e-4, "gamma": 0.99, "gae_lambda": 0.95,
        "clip_range": 0.2, "ent_coef": 0.0, "policy_kwargs": {"net_arch": [256, 256], "log_std_init": -0.5}})
    sac_kwargs: dict[str, Any] = field(default_factory=lambda: {
        # 2 gradient steps per 8 env steps (4 envs x train_freq 2): the update ratio that fits 2 CPU cores
        "learning_starts": 5000, "train_freq": 2, "gradient_steps": 2, "batch_size": 256, "buffer_size": 1_000_000,
        "learning_rate": 3e-4, "gamma": 0.99, "tau": 0.005, "policy_kwargs": {"net_arch": [256, 256]}})

    def __post_init__(self) -> None:
        if self.algo not in EXPERT_ALGOS:
            raise ValueError(f"expert algo must be one of {EXPERT_ALGOS}, got {self.algo!r}")

    def algo_class(self) -> Any:
        """The SB3 algorithm class of :attr:`algo`."""
        return _algo_class(self.algo)

    def algo_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :attr:`algo` (``ppo_kwargs`` or ``sac_kwargs``)."""
        return dict(self.ppo_kwargs if self.algo == "ppo" else self.sac_kwargs)


def _algo_class(algo: str) -> Any:
    import stable_baselines3 as sb3

    return {"ppo": sb3.PPO, "sac": sb3.SAC}[algo]


class _ProprioObservation(gym.ObservationWrapper):  # type: ignore[type-arg]
    """Expose ``obs["proprio"]`` of a genrl_gym env as a flat Box observation (what SB3's MlpPolicy reads)."""

    def __init__(self, env: gym.Env) -> None:  # type: ignore[type-arg]
        super().__init__(env)
        self.observation_space = env.observation_space["proprio"]  # type: ignore[index]

    def observation(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        return observation["proprio"]


def make_proprio_env(domain: str, task: str, *, episode_frames: int = 1000, seed: int | None = None) -> gym.Env:  # type: ignore[type-arg]
    """A render-free env of ``domain``/``task`` whose observation is the flat proprioception (float32 ``[P]``).

    Same physics, action repeat and reward as :func:`genrl_gym.envs.make_pixel_env`, so a policy trained here acts
    identically in a pixel env made with ``proprio=True``.
    """
    from genrl_gym.envs import make_pixel_env

    env = make_pixel_env(domain, task, proprio=True, pixels=False, episode_frames=episode_frames, seed=seed)
    return _ProprioObservation(env)


def stage_paths(out_dir: str | Path, config: ExpertConfig) -> list[Path]:
    """Checkpoint paths ``<out_dir>/stage-<steps>.zip`` of each stage, in training order."""
    out = Path(out_dir)
    return [out / f"stage-{int(round(f * config.total_steps)):08d}.zip" for f in config.stages]


def train_expert(domain: str, task: str, out_dir: str | Path, config: ExpertConfig | None = None, *,
                 progress: bool = True, tensorboard_log: str | None = None,
                 init_from: str | Path | None = None) -> list[Path]:
    """Train (or resume) an SB3 policy on the proprioception of ``domain``/``task``; keep stage checkpoints.

    :param out_dir: where ``stage-*.zip`` (+ ``stage-*.vecnorm.pkl``) and ``config.json`` go.
    :param config: budget, algorithm and its settings (default :class:`ExpertConfig`: PPO).
    :param init_from: a stage checkpoint of another task of the same domain to start from (a curriculum: walker walk
        started from a standing policy learns an upright gait, from scratch PPO settles into a crouched shuffle).
        Its policy weights and observation statistics come along; settings, optimiser, step count and reward
        statistics are this task's own, so the stages count this task's training steps. Source and expert must use
        the same algorithm (a SAC expert also keeps its own replay buffer and critics' optimiser state).
    :return: paths of the stage checkpoints, in training order. Stages already on disk are not retrained: the
        run resumes from the latest one.
    """
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    config = config or ExpertConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "config.json", "w") as f:
        json.dump({"domain": domain, "task": task, **asdict(config),
                   "init_from": None if init_from is None else str(init_from)}, f, indent=2)
    paths = stage_paths(out, config)
    done = [p for p in paths if p.exists() and _vecnorm_path(p).exists()]
    if len(done) == len(paths):
        return paths
    init = None if done or init_from is None else Path(init_from)  # a resumed expert continues from its own stage
    if init is not None and not (init.exists() and _vecnorm_path(init).exists()):
        raise FileNotFoundError(f"expert warm start {init} (or its {_vecnorm_path(init).name}) does not exist; "
                                "train that task's expert first")
    init_algo = None if init is None else _load_stats(init).get("algo", "ppo")
    if init is not None and init_algo != config.algo:
        raise ValueError(f"expert warm start {init} was trained with {init_algo}, this expert uses {config.algo}: "
                         "start from an expert of the same algorithm or drop the warm start")
    algo = config.algo_class()
    kwargs = config.algo_kwargs()

    venv = make_vec_env(make_proprio_env, n_envs=config.n_envs, seed=config.seed,
                        env_kwargs={"domain": domain, "task": task})
    # PPO learns from normalised returns; SAC's entropy temperature is tuned against the raw reward scale
    venv = VecNormalize(venv, norm_obs=True, norm_reward=config.algo == "ppo", gamma=kwargs.get("gamma", 0.99))
    if done:
        last = done[-1]
        stats = _load_stats(last)
        venv.obs_rms = stats["obs_rms"]
        if "ret_rms" in stats:  # stages written before the reward statistics were saved restart them
            venv.ret_rms = stats["ret_rms"]
        model = algo.load(str(last), env=venv, device="cpu", tensorboard_log=tensorboard_log)
        if _replay_path(last).exists():  # without it a resumed SAC refills its buffer from scratch
            model.load_replay_buffer(str(_replay_path(last)))
        log.info("resuming expert %s_%s from %s", domain, task, last)
    else:
        model = algo("MlpPolicy", venv, seed=config.seed, device="cpu", verbose=0, tensorboard_log=tensorboard_log,
                     **kwargs)
        if init is not None:  # the source's weights and observation statistics; this task's settings, optimiser
            venv.obs_rms = _load_stats(init)["obs_rms"]
            model.policy.load_state_dict(algo.load(str(init), device="cpu").policy.state_dict())
            log.info("expert %s_%s starts from %s", domain, task, init)
    for path, fraction in zip(paths, config.stages):
        if path in done:
            continue
        target = int(round(fraction * config.total_steps))
        model.learn(total_timesteps=max(0, target - model.num_timesteps), reset_num_timesteps=False,
                    progress_bar=progress, tb_log_name=f"expert_{domain}_{task}")
        _save_stage(model, venv, path, config.algo)
        if config.algo == "sac":  # only the latest buffer is needed to resume; earlier ones are large
            for old in out.glob("stage-*.replay.pkl"):
                if old != _replay_path(path):
                    old.unlink()
    venv.close()
    return paths


def _vecnorm_path(stage: Path) -> Path:
    return stage.with_suffix(".vecnorm.pkl")


def _replay_path(stage: Path) -> Path:
    return stage.with_suffix(".replay.pkl")


def _load_stats(stage: Path) -> dict[str, Any]:
    """The normalisation statistics :func:`_save_stage` wrote beside ``stage``."""
    with open(_vecnorm_path(stage), "rb") as f:
        return pickle.load(f)


def _save_stage(model: Any, venv: Any, path: Path, algo: str = "ppo") -> None:
    """Write the model, its normalisation statistics (and a SAC's replay buffer) atomically (temp files + rename)."""
    if algo == "sac":  # written first: a stage whose .zip and .vecnorm.pkl exist counts as finished
        with atomic_write(_replay_path(path), "wb") as f:
            model.save_replay_buffer(f)
    with atomic_write(path, "wb") as f:
        model.save(f)
    # Only the statistics (ExpertPolicy's and a resume's): a pickled VecNormalize would drag its sub-envs along.
    with atomic_write(_vecnorm_path(path), "wb") as f:
        pickle.dump({"obs_rms": venv.obs_rms, "ret_rms": venv.ret_rms, "clip_obs": venv.clip_obs,
                     "epsilon": venv.epsilon, "algo": algo}, f)


class ExpertPolicy:
    """An expert stage usable by :class:`genrl_gym.data.SB3Policy`: SB3 ``predict`` on normalised proprioception.

    :param path: a ``stage-*.zip`` written by :func:`train_expert`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        stats = _load_stats(self.path)
        self.algo: str = stats.get("algo", "ppo")  # stages written before SAC experts existed are PPO
        self.model = _algo_class(self.algo).load(str(self.path), device="cpu")
        self._rms, self._clip, self._eps = stats["obs_rms"], stats["clip_obs"], stats["epsilon"]
        self.observation_space = self.model.observation_space
        self.action_space = self.model.action_space

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """Actions ``[N, A]`` for proprioceptive observations ``[N, P]`` (SB3's ``predict`` signature)."""
        obs = np.clip((observation - self._rms.mean) / np.sqrt(self._rms.var + self._eps), -self._clip, self._clip)
        return self.model.predict(obs.astype(np.float32), state=state, episode_start=episode_start,
                                  deterministic=deterministic)
