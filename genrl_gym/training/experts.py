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

Nothing read back from a run folder is unpickled: the normalisation statistics are JSON (``stage-*.vecnorm.json``) and
a SAC stage's replay buffer is an ``.npz`` read with ``allow_pickle=False`` (``stage-*.replay.npz``). Stages written
before (``stage-*.vecnorm.pkl``/``.replay.pkl``) are refused with a CheckpointError; :func:`convert_pickled_stats`
converts the statistics of a run you trust.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3 as sb3
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecNormalize

from genrl_gym import sb3_compat
from genrl_gym.envs import make_pixel_env
from genrl_gym.utils import CheckpointError, atomic_write

log = logging.getLogger(__name__)


EXPERT_ALGOS = ("ppo", "sac")


@dataclass
class ExpertConfig:
    """How one task's expert is trained (SB3 PPO or SAC on proprioception)."""

    total_steps: int = field(default=1_000_000, metadata={"positive": True})
    """Agent steps of training (action repeat 2: twice as many physics frames)."""
    algo: str = field(default="ppo", metadata={"choices": "genrl_gym.training.experts:EXPERT_ALGOS"})
    """``ppo`` (fast per step, but plateaus on hard tasks such as walker run at a true return near 260) or ``sac``
    (slower per step with the default 2 updates per 8 env steps; off-policy, so far more return per step)."""
    stages: tuple[float, ...] = (0.2, 0.5, 1.0)
    """Fractions of ``total_steps`` at which a checkpoint (a data-collection stage) is kept."""
    n_envs: int = field(default=8, metadata={"positive": True})
    """Parallel environments of the expert's training."""
    seed: int = 0
    """Seed of the expert's training."""
    ppo_kwargs: dict[str, Any] = field(default_factory=lambda: {
        "n_steps": 512, "batch_size": 256, "n_epochs": 10, "learning_rate": 3e-4, "gamma": 0.99, "gae_lambda": 0.95,
        "clip_range": 0.2, "ent_coef": 0.0, "policy_kwargs": {"net_arch": [256, 256], "log_std_init": -0.5}})
    """Keyword arguments of SB3 ``PPO``."""
    sac_kwargs: dict[str, Any] = field(default_factory=lambda: {
        # 2 gradient steps per 8 env steps (4 envs x train_freq 2): the update ratio that fits 2 CPU cores
        "learning_starts": 5000, "train_freq": 2, "gradient_steps": 2, "batch_size": 256, "buffer_size": 1_000_000,
        "learning_rate": 3e-4, "gamma": 0.99, "tau": 0.005, "policy_kwargs": {"net_arch": [256, 256]}})
    """Keyword arguments of SB3 ``SAC``."""

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
    return {"ppo": sb3.PPO, "sac": sb3.SAC}[algo]


class _ProprioObservation(gym.ObservationWrapper):
    """Expose ``obs["proprio"]`` of a genrl_gym env as a flat Box observation (what SB3's MlpPolicy reads)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = env.observation_space["proprio"]  # type: ignore[index]

    def observation(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        return observation["proprio"]


def make_proprio_env(domain: str, task: str, *, episode_frames: int = 1000, seed: int | None = None) -> gym.Env:
    """A render-free env of ``domain``/``task`` whose observation is the flat proprioception (float32 ``[P]``).

    Same physics, action repeat and reward as :func:`genrl_gym.envs.make_pixel_env`, so a policy trained here acts
    identically in a pixel env made with ``proprio=True``.
    """
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

    :param out_dir: where ``stage-*.zip`` (+ ``stage-*.vecnorm.json``, and for SAC the latest ``stage-*.replay.npz``)
        and ``config.json`` go.
    :param config: budget, algorithm and its settings (default :class:`ExpertConfig`: PPO).
    :param init_from: a stage checkpoint of another task of the same domain to start from (a curriculum: walker walk
        started from a standing policy learns an upright gait, from scratch PPO settles into a crouched shuffle).
        Its policy weights and observation statistics come along; settings, optimiser, step count and reward
        statistics are this task's own, so the stages count this task's training steps. Source and expert must use
        the same algorithm (a SAC expert also keeps its own replay buffer and critics' optimiser state).
    :return: paths of the stage checkpoints, in training order. Stages already on disk are not retrained: the
        run resumes from the latest one.
    """
    config = config or ExpertConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "config.json", "w") as f:
        json.dump({"domain": domain, "task": task, **asdict(config),
                   "init_from": None if init_from is None else str(init_from)}, f, indent=2)
    paths = stage_paths(out, config)
    for p in paths:
        if p.exists() and not _vecnorm_path(p).exists() and _legacy_vecnorm_path(p).exists():
            _load_stats(p)  # a stage of the old pickle format: the CheckpointError says to retrain or convert
    done = [p for p in paths if p.exists() and _vecnorm_path(p).exists()]
    if len(done) == len(paths):
        return paths
    init = None if done or init_from is None else Path(init_from)  # a resumed expert continues from its own stage
    if init is not None and not (init.exists() and is_expert_stage(init)):
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
        model = algo("MlpPolicy", venv, seed=config.seed, device="cpu", verbose=0, tensorboard_log=tensorboard_log,
                     **kwargs)
        _restore_training_state(model, last)
        if _replay_path(last).exists():  # without it a resumed SAC refills its buffer from scratch
            _load_replay(model, _replay_path(last))
        elif _replay_path(last).with_suffix(".pkl").exists():
            log.warning("%s: the replay buffer is in the old pickle format, which is not read (untrusted files are never "
                        "unpickled); the resumed SAC expert refills its buffer from scratch", last)
        log.info("resuming expert %s_%s from %s", domain, task, last)
    else:
        model = algo("MlpPolicy", venv, seed=config.seed, device="cpu", verbose=0, tensorboard_log=tensorboard_log,
                     **kwargs)
        if init is not None:  # the source's weights and observation statistics; this task's settings, optimiser
            venv.obs_rms = _load_stats(init)["obs_rms"]
            model.policy.load_state_dict(_stage_params(init)[0]["policy"])
            log.info("expert %s_%s starts from %s", domain, task, init)
    for path, fraction in zip(paths, config.stages):
        if path in done:
            continue
        target = int(round(fraction * config.total_steps))
        model.learn(total_timesteps=max(0, target - model.num_timesteps), reset_num_timesteps=False,
                    progress_bar=progress, tb_log_name=f"expert_{domain}_{task}")
        _save_stage(model, venv, path, config.algo)
        if config.algo == "sac":  # only the latest buffer is needed to resume; earlier ones are large
            for old in out.glob("stage-*.replay.npz"):
                if old != _replay_path(path):
                    old.unlink()
    venv.close()
    return paths


STATS_FORMAT = "genrl_gym.expert_stats"
STATS_VERSION = 1
_REPLAY_KEYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _vecnorm_path(stage: Path) -> Path:
    return stage.with_suffix(".vecnorm.json")


def _legacy_vecnorm_path(stage: Path) -> Path:
    return stage.with_suffix(".vecnorm.pkl")


def _replay_path(stage: Path) -> Path:
    return stage.with_suffix(".replay.npz")


def _stage_data(path: Path) -> dict[str, Any]:
    """The plain JSON fields of an SB3 zip's ``data`` entry. SB3 also stores cloudpickle blobs there (spaces, policy
    class, schedules); they stay text: nothing a run folder holds is unpickled."""
    try:
        return sb3_compat.read_data(path)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: not a readable expert stage ({type(e).__name__}: {e}); retrain that stage "
                              "(delete it and run the same command)") from e


def _stage_params(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state dicts, torch variables)`` of an SB3 zip, read with ``torch.load(weights_only=True)``."""
    _, params, variables = sb3_compat.load_zip(str(path), device="cpu", load_data=False)
    return params, variables


def _stage_policy(algo: str, path: Path) -> Any:
    """The SB3 ``MlpPolicy`` of a stage, rebuilt from its recorded sizes and weights (for acting only)."""
    data = _stage_data(path)
    try:
        obs_shape = sb3_compat.space_shape(data, "observation_space")
        act_shape = sb3_compat.space_shape(data, "action_space")
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: an expert stage without its space shapes; retrain that stage") from e
    obs_space = gym.spaces.Box(-np.inf, np.inf, obs_shape, np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, act_shape, np.float32)  # the proprio envs' normalised action box
    policy_cls = _algo_class(algo).policy_aliases["MlpPolicy"]
    policy = policy_cls(obs_space, act_space, lambda _: 0.0, **dict(data.get("policy_kwargs") or {}))
    policy.load_state_dict(_stage_params(path)[0]["policy"])
    policy.set_training_mode(False)
    return policy


def _restore_training_state(model: Any, path: Path) -> None:
    """Load a stage's weights, optimiser states, torch variables (SAC's entropy temperature) and step counters into
    a freshly built ``model`` of the same algorithm and settings, without unpickling anything."""
    params, variables = _stage_params(path)
    model.set_parameters(params, exact_match=True, device="cpu")
    sb3_compat.restore_torch_variables(model, variables)
    sb3_compat.restore_counters(model, _stage_data(path))


def is_expert_stage(path: str | Path) -> bool:
    """Whether ``path`` is a stage checkpoint of :func:`train_expert` (it has normalisation statistics beside it, in
    the current JSON or the old pickle format)."""
    p = Path(path)
    return _vecnorm_path(p).exists() or _legacy_vecnorm_path(p).exists()


def _rms_to_json(rms: Any) -> dict[str, Any]:
    mean, var = np.asarray(rms.mean, np.float64), np.asarray(rms.var, np.float64)
    return {"shape": list(mean.shape), "mean": mean.reshape(-1).tolist(), "var": var.reshape(-1).tolist(),
            "count": float(rms.count)}


def _rms_from_json(d: dict[str, Any]) -> Any:
    shape = tuple(int(n) for n in d["shape"])
    rms = RunningMeanStd(shape=shape)
    rms.mean = np.asarray(d["mean"], np.float64).reshape(shape)
    rms.var = np.asarray(d["var"], np.float64).reshape(shape)
    rms.count = float(d["count"])
    return rms


def _stats_json(venv_or_stats: Any, algo: str) -> dict[str, Any]:
    get: Callable[[str], Any] = (venv_or_stats.get if isinstance(venv_or_stats, dict) else lambda k: getattr(venv_or_stats, k))
    return {"format": STATS_FORMAT, "version": STATS_VERSION, "algo": algo, "clip_obs": float(get("clip_obs")),
            "epsilon": float(get("epsilon")), "obs_rms": _rms_to_json(get("obs_rms")),
            "ret_rms": _rms_to_json(get("ret_rms"))}


def _load_stats(stage: Path) -> dict[str, Any]:
    """The normalisation statistics :func:`_save_stage` wrote beside ``stage``: ``obs_rms``, ``ret_rms``
    (``RunningMeanStd``), ``clip_obs``, ``epsilon``, ``algo``. Never unpickles.

    :raises CheckpointError: missing, corrupt or old (pickled) statistics; the message says how to fix it.
    """
    path = _vecnorm_path(stage)
    if not path.exists():
        if _legacy_vecnorm_path(stage).exists():
            raise CheckpointError(
                f"{stage}: its normalisation statistics are in the old pickle format ({_legacy_vecnorm_path(stage).name}), "
                "which genrl-gym no longer reads: unpickling a file can run any code. Retrain the expert (`genrl "
                "pipeline` / train_expert into a new folder), or, if you trust the file, convert it once with "
                f"`python -c \"from genrl_gym.training.experts import convert_pickled_stats; "
                f"convert_pickled_stats('{stage}')\"`")
        raise CheckpointError(f"{stage}: no normalisation statistics ({path.name}) beside it; train the expert with "
                              "genrl_gym.training.experts.train_expert")
    try:
        d = json.loads(path.read_text())
        if d.get("format") != STATS_FORMAT:
            raise ValueError(f"format tag {d.get('format')!r}, expected {STATS_FORMAT!r}")
        if int(d.get("version", 0)) > STATS_VERSION:
            raise ValueError(f"version {d['version']} is newer than this genrl-gym reads ({STATS_VERSION}); upgrade")
        stats = {"algo": str(d["algo"]), "clip_obs": float(d["clip_obs"]), "epsilon": float(d["epsilon"]),
                 "obs_rms": _rms_from_json(d["obs_rms"]), "ret_rms": _rms_from_json(d["ret_rms"])}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable expert normalisation statistics ({type(e).__name__}: {e}); retrain "
                              "the expert") from e
    if not all(math.isfinite(x) for x in (stats["clip_obs"], stats["epsilon"])):
        raise CheckpointError(f"{path}: non-finite clip_obs/epsilon; retrain the expert")
    return stats


def convert_pickled_stats(stage: str | Path) -> Path:
    """Convert the old pickled statistics of a stage (``stage-*.vecnorm.pkl``) to ``stage-*.vecnorm.json``.

    **Unpickles** the old file, which can run any code it holds: use it only on runs you made yourself or otherwise
    trust. The pickle is left in place (delete it after checking). Returns the JSON path.
    """
    stage = Path(stage)
    with open(_legacy_vecnorm_path(stage), "rb") as f:
        old = pickle.load(f)  # noqa: S301  (explicit, documented opt-in for trusted files)
    with atomic_write(_vecnorm_path(stage), "w") as f:
        json.dump(_stats_json(old, str(old.get("algo", "ppo"))), f, indent=1)
    return _vecnorm_path(stage)


def _save_replay(model: Any, path: Path) -> None:
    """A SAC's replay buffer as plain arrays (``.npz``, no pickle): storage arrays, ``pos`` and ``full``."""
    rb = model.replay_buffer
    arrays = {k: getattr(rb, k) for k in _REPLAY_KEYS if getattr(rb, k, None) is not None}
    with atomic_write(path, "wb") as f:
        np.savez(f, pos=np.int64(rb.pos), full=np.bool_(rb.full), **arrays)


def _load_replay(model: Any, path: Path) -> None:
    """Fill ``model.replay_buffer`` from :func:`_save_replay`'s file (``allow_pickle=False``); shapes must match."""
    rb = model.replay_buffer
    try:
        with np.load(path, allow_pickle=False) as z:
            for key in _REPLAY_KEYS:
                have = getattr(rb, key, None)
                if have is None:
                    continue
                arr = z[key]
                if arr.shape != have.shape:
                    raise ValueError(f"{key} has shape {arr.shape}, the buffer {have.shape}")
                setattr(rb, key, arr.astype(have.dtype, copy=False))
            rb.pos, rb.full = int(z["pos"]), bool(z["full"])
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: unreadable SAC replay buffer ({type(e).__name__}: {e}); delete it to resume "
                              "with an empty buffer") from e


def _save_stage(model: Any, venv: Any, path: Path, algo: str = "ppo") -> None:
    """Write the model, its normalisation statistics (and a SAC's replay buffer) atomically (temp files + rename)."""
    if algo == "sac":  # written first: a stage whose .zip and .vecnorm.json exist counts as finished
        _save_replay(model, _replay_path(path))
    with atomic_write(path, "wb") as f:
        model.save(f)
    # Only the statistics (ExpertPolicy's and a resume's), as JSON: nothing a run folder holds is unpickled.
    with atomic_write(_vecnorm_path(path), "w") as f:
        json.dump(_stats_json(venv, algo), f, indent=1)


class ExpertPolicy:
    """An expert stage usable by :class:`genrl_gym.data.SB3Policy`: SB3 ``predict`` on normalised proprioception.

    :param path: a ``stage-*.zip`` written by :func:`train_expert`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        stats = _load_stats(self.path)
        self.algo: str = stats.get("algo", "ppo")  # stages written before SAC experts existed are PPO
        self.model = _stage_policy(self.algo, self.path)
        self._rms, self._clip, self._eps = stats["obs_rms"], stats["clip_obs"], stats["epsilon"]
        self.observation_space = self.model.observation_space
        self.action_space = self.model.action_space

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """Actions ``[N, A]`` for proprioceptive observations ``[N, P]`` (SB3's ``predict`` signature)."""
        obs = np.clip((observation - self._rms.mean) / np.sqrt(self._rms.var + self._eps), -self._clip, self._clip)
        return self.model.predict(obs.astype(np.float32), state=state, episode_start=episode_start,
                                  deterministic=deterministic)
