"""GenRLAgent: GenRL's behaviour learner (actor-critic in imagination) with a Stable-Baselines3 surface.

The agent never steps an environment while learning. Each update (one SB3 "timestep"):

1. start states ``[N]``: posteriors of replayed sequences (``start="offline"``), or data-free states built from the
   world model alone (``start="data_free"``, the GenRL paper's data-free policy learning);
2. the actor is rolled ``H`` steps through the frozen world model's prior (gradients flow back through the imagined
   dynamics into the actions: dynamics backpropagation);
3. rewards: :func:`genrl_gym.reward.trajectory_match` of the imagined states' reward features against the prompt's
   target trajectory (the same function the Gymnasium wrappers use on real observations);
4. DreamerV3 actor-critic losses from :mod:`genrl_gym.agents.actor_critic`, one Adam step each for actor and critic.

Acting (:meth:`GenRLAgent.predict`) filters real frames through the world model's posterior, recurrently: the SB3
``state`` is the latent plus the previous action, reset where ``episode_start`` is true, as ``RecurrentPPO`` does.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common import utils as sb3_utils
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback, ProgressBarCallback
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from torch import Tensor, nn

from genrl_gym import sb3_compat
from genrl_gym.agents.actor_critic import (
    Actor,
    ActorCriticConfig,
    AgentPresetName,
    Critic,
    actor_loss,
    agent_preset,
    critic_loss,
    hard_update,
    lambda_returns,
    return_offset_scale,
    step_weights,
    update_return_ema,
)
from genrl_gym.data import EpisodeStore, SequenceSampler
from genrl_gym.model_store import resolve_model
from genrl_gym.models import MFWM, State
from genrl_gym.models.mfwm import identity_str, identity_dict
from genrl_gym.models.rssm import uniform_onehot
from genrl_gym.prompts import target_from_prompt
from genrl_gym.reward import ALIGNS, DEFAULT_SCORE, KL_SCORES, SCORES, target_horizon, trajectory_match
from genrl_gym.utils import CheckpointError, atomic_write
from genrl_gym.vlm import load_vlm
from genrl_gym.wrappers.callbacks import WallClockBudget

__all__ = ["GenRLAgent", "GenRLPolicy", "AGENT_FORMAT", "AGENT_FORMAT_VERSION"]

SelfGenRLAgent = TypeVar("SelfGenRLAgent", bound="GenRLAgent")

#: Tag and version of the extra header :meth:`GenRLAgent.save` writes into the SB3 zip.
AGENT_FORMAT = "genrl_gym.agent"
AGENT_FORMAT_VERSION = 1  # version 1 headers written since the world-model check also hold "world_model"
_HEADER = "genrl_agent.json"
_MFWM_ENTRY = "mfwm.pt"  # not ".pth": SB3's loader treats every .pth entry as a state dict


class GenRLPolicy(nn.Module):
    """Everything the agent learns or needs beside the world model: actor, critic, slow critic, the return
    normaliser's percentile EMA and the prompt's target trajectory (buffers, so that a saved agent needs no VLM).

    Not an SB3 ``BasePolicy``: those map an observation to an action statelessly through a features extractor, while
    GenRL's actor reads world-model latents that only the recurrent posterior filter (:meth:`GenRLAgent.predict`) can
    produce from frames.

    :param feat_dim: latent feature size ``S*C + Dd`` (actor/critic input).
    :param action_dim: ``A``.
    :param cfg: sizes.
    :param target_len: ``H + 1`` target steps.
    :param stoch: ``S`` categoricals of :param classes: ``C`` classes; :param feature_dim: reward-feature size ``F``;
    :param embed_dim: VLM size ``D``.
    """

    return_ema: Tensor
    target_features: Tensor
    target_stoch: Tensor
    target_embedding: Tensor
    target_logits: Tensor

    def __init__(self, feat_dim: int, action_dim: int, cfg: ActorCriticConfig, target_len: int, stoch: int, classes: int,
                 feature_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.actor = Actor(feat_dim, action_dim, cfg.layers, cfg.units, cfg.min_std, cfg.max_std)
        self.critic = Critic(feat_dim, cfg.layers, cfg.units, cfg.num_bins, cfg.bins_range)
        self.slow_critic = Critic(feat_dim, cfg.layers, cfg.units, cfg.num_bins, cfg.bins_range)
        hard_update(self.slow_critic, self.critic)
        self.slow_critic.requires_grad_(False)  # only ever changed by hard copies
        self.register_buffer("return_ema", torch.zeros(2))  # EMA of the (P5, P95) return percentiles, init 0
        self.register_buffer("target_features", torch.zeros(target_len, feature_dim))
        self.register_buffer("target_stoch", torch.zeros(target_len, stoch * classes))
        self.register_buffer("target_logits", torch.zeros(target_len, stoch, classes))
        self.register_buffer("target_embedding", torch.zeros(embed_dim))


class _UpdateProgressBar(ProgressBarCallback):
    """SB3's progress bar, advanced by one per behaviour update (it reads no environment)."""

    def _on_step(self) -> bool:
        self.pbar.update(1)
        return True


def _check_world_model(path: Path, header: dict[str, Any], wm: MFWM, allow_mismatch: bool) -> None:
    """Compare the world model an agent is about to use with the one its header records (see ``GenRLAgent.load``)."""
    recorded = header.get("world_model")
    domain = recorded.get("domain") if isinstance(recorded, dict) else header.get("domain")
    if domain is not None and domain != wm.domain:
        raise CheckpointError(f"{path}: this agent was trained on a {domain!r} world model but the model given is of "
                              f"domain {wm.domain!r}; load it with a {domain} model (its actor's actions mean nothing to a "
                              f"{wm.domain} body)")
    if not isinstance(recorded, dict):
        warnings.warn(f"{path}: saved before agents recorded their world model's weights: cannot check that the model "
                      f"given is the one it was trained with (only its domain, {wm.domain!r}, matches); save the agent "
                      "again to record it", UserWarning, stacklevel=3)
        return
    have_vlm = identity_dict(wm.vlm_identity)
    if recorded.get("vlm") != have_vlm:
        raise CheckpointError(f"{path}: this agent was trained on a world model of VLM {identity_str(recorded.get('vlm'))} "
                              f"but the model given has VLM {identity_str(have_vlm)}; its prompt target lives in the "
                              "other model's latent space: load it with the model it was trained with")
    want, have = recorded.get("sha256"), wm.weights_sha256()
    if want != have:
        msg = (f"{path}: the world model given is not the one this agent was trained with (weights SHA-256 {have[:12]}... "
               f"vs recorded {str(want)[:12]}...; same domain {wm.domain!r} and VLM)")
        if not allow_mismatch:
            raise CheckpointError(msg + "; load it with that model, or pass allow_model_mismatch=True to use this one "
                                  "(e.g. a retrained model) knowing the actor learned on the other model's latents")
        warnings.warn(msg + "; loaded anyway (allow_model_mismatch=True): the actor, critic and target were learned on "
                      "the other model's latents, so expect worse behaviour until it is trained further", UserWarning,
                      stacklevel=3)


def _flatten_callbacks(callback: BaseCallback) -> list[BaseCallback]:
    """``callback`` and, for a CallbackList, every callback inside it (recursively)."""
    if isinstance(callback, CallbackList):
        return [c for inner in callback.callbacks for c in _flatten_callbacks(inner)]
    return [callback]


class GenRLAgent(BaseAlgorithm):
    """GenRL's imagination actor-critic behind the Stable-Baselines3 algorithm API.

    Subclasses :class:`stable_baselines3.common.base_class.BaseAlgorithm` (the sb3-contrib ARS pattern: own ``learn``
    loop, ``_setup_model``, ``_get_torch_save_params``, ``_excluded_save_params``), so SB3 callbacks, loggers,
    ``evaluate_policy`` and ``isinstance(agent, BaseAlgorithm)`` checks work. Differences, all because GenRL learns
    from a world model and not from an environment:

    * **One timestep = one behaviour update** (``batch_size`` start states x ``horizon`` imagined steps);
      ``learn(total_timesteps=50_000)`` is the paper's budget. No environment is stepped, so ``env`` is optional;
      callbacks that read ``training_env`` (``EvalCallback``) need the agent built with ``env=``.
    * ``predict`` is recurrent (RecurrentPPO's convention): ``state`` = (deter, stoch, logits, previous action) numpy
      arrays, reset where ``episode_start``. Images are channel-last uint8 ``[H, W, 3]`` (channel-first is accepted),
      so an ``env`` given here is not wrapped in ``VecTransposeImage``.
    * ``save`` writes SB3's zip atomically plus the world model (embedded, fp32 or fp16, or a reference to its path
      or store name) and a format header; ``load`` rebuilds the world model from it. The learned networks, both
      optimisers, the return normaliser and the prompt's target are restored exactly: deterministic actions match.
    * The world model is frozen (``requires_grad_(False)``, in no optimiser); gradients flow *through* it.

    :param model: an :class:`~genrl_gym.models.MFWM`, a checkpoint path, or a model name of the local store
        (:func:`genrl_gym.model_store.resolve_model`). An MFWM object is moved to ``device`` and frozen *in place*
        (pass a copy if you keep training it).
    :param prompt: text, a video path, frames ``uint8 [T, H, W, 3]``, or a ready ``TargetTrajectory``.
    :param vlm: the VLM (or spec) that embeds the prompt; default: what ``target_from_prompt`` picks for the model.
    :param preset: actor-critic sizes, ``"tiny"`` (tests), ``"small"`` (CPU) or ``"paper"`` (4 x 1024, lr 3e-5).
    :param start: ``"data_free"`` (no dataset; reference default) or ``"offline"`` (posteriors of ``store`` sequences).
    :param store: :class:`~genrl_gym.data.EpisodeStore` (or its path) for offline starts.
    :param horizon: imagined steps ``H`` (default: the preset's, ``small`` 8, ``paper`` 16; target length ``H + 1``).
    :param batch_size: start states per update (default: the preset's; paper 1024).
    :param score_kind: per-step score of :func:`genrl_gym.reward.trajectory_match` (default ``"max_cosine"``).
    :param align: alignment of the reward (``"sequence"``, the reference's; ``"phase"``, which also searches where
        inside a longer target the imagined trajectory starts; ``"none"``); default the world model's ``reward_align``.
        The target gets the length the alignment expects (:func:`genrl_gym.reward.target_horizon`); use the same
        alignment as the env's reward.
    :param entropy_coef: actor entropy bonus (GenRL: 0).
    :param learning_rate: Adam learning rate of actor and critic (float or SB3 schedule; default: the preset's).
    :param overrides: further :class:`~genrl_gym.agents.actor_critic.ActorCriticConfig` fields (e.g. ``{"units": 64}``).
    :param seed: seeds Python, NumPy, torch and the replay sampler.
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"``...; the world model is moved there.
    :param tensorboard_log: TensorBoard log directory (None: no TensorBoard).
    :param verbose: 0 silent, 1 prints the logged table every ``log_interval`` updates.
    :param env: optional env (spaces are checked against the model) for callbacks that need one.
    """

    policy_aliases: ClassVar[dict[str, type]] = {"GenRLPolicy": GenRLPolicy}
    #: what one timestep is, for progress displays (:class:`~genrl_gym.wrappers.WallClockBudget`)
    progress_unit: ClassVar[str] = "updates"
    policy: GenRLPolicy  # type: ignore[assignment]
    action_space: spaces.Box  # supported_action_spaces=(spaces.Box,)
    world_model: MFWM
    config: ActorCriticConfig

    def __init__(
        self,
        model: MFWM | str | os.PathLike[str] | None,
        prompt: Any,
        *,
        vlm: Any = None,
        preset: AgentPresetName = "small",
        start: Literal["data_free", "offline"] = "data_free",
        store: Any = None,
        horizon: int | None = None,
        batch_size: int | None = None,
        score_kind: str = DEFAULT_SCORE,
        align: str | None = None,
        entropy_coef: float | None = None,
        learning_rate: float | Schedule | None = None,
        overrides: dict[str, Any] | None = None,
        seed: int | None = None,
        device: torch.device | str = "auto",
        tensorboard_log: str | None = None,
        verbose: int = 0,
        env: GymEnv | str | None = None,
        _init_setup_model: bool = True,
    ) -> None:
        explicit = {k: v for k, v in dict(horizon=horizon, batch_size=batch_size, entropy_coef=entropy_coef).items()
                    if v is not None}
        if learning_rate is not None and not callable(learning_rate):
            explicit["learning_rate"] = float(learning_rate)
        cfg = agent_preset(preset, **{**(overrides or {}), **explicit})
        super().__init__(policy=GenRLPolicy,  # type: ignore[arg-type]  # not a BasePolicy (see GenRLPolicy); SB3 only stores it
                         env=env, learning_rate=learning_rate if callable(learning_rate) else
                         cfg.learning_rate, tensorboard_log=tensorboard_log, verbose=verbose, device=device,
                         support_multi_env=True, monitor_wrapper=True, seed=seed, supported_action_spaces=(spaces.Box,))
        if self.env is None:
            self.n_envs = 1  # so that set_env() can attach an env later
        self.agent_config = cfg.to_dict()  # JSON-able copy, what save() stores
        self.start = start
        self.score_kind = score_kind
        self.align = align
        self.store = store
        self.vlm = vlm
        self.prompt = prompt
        self.prompt_text = ""
        self.prompt_kind = ""
        self.model_source: str | None = None
        self._sampler: Any = None
        self._init_target: Any = None
        if start not in ("data_free", "offline"):
            raise ValueError(f"start={start!r}: choose 'data_free' (no dataset) or 'offline' (pass store=EpisodeStore)")
        if score_kind not in SCORES:
            raise ValueError(f"score_kind={score_kind!r}; choose one of {', '.join(SCORES)}")
        if align is not None and align not in ALIGNS:
            raise ValueError(f"align={align!r}; choose one of {', '.join(ALIGNS)}")
        if model is not None:
            self._attach_world_model(model)
            if self.align is None:
                self.align = self.world_model.reward_align
        if _init_setup_model:
            if model is None or prompt is None:
                raise ValueError("GenRLAgent needs a world model (model=MFWM, checkpoint path or name) and a prompt")
            if start == "offline" and store is None:
                raise ValueError("start='offline' samples start states from a dataset: pass store=EpisodeStore(...) "
                                 "(or use start='data_free', which needs none)")
            n_reference = cfg.batch_size - cfg.episode_starts
            if start == "data_free" and n_reference % 2:
                raise ValueError(f"batch_size={cfg.batch_size} with episode_fraction={cfg.episode_fraction} leaves "
                                 f"{n_reference} reference starts, which must be even (half warm up with random "
                                 "actions, half with the actor): change batch_size or episode_fraction")
            self._init_target = self._make_target(prompt, vlm, target_horizon(str(self.align), cfg.horizon + 1))
            self._setup_model()

    # ------------------------------------------------------------------------------------------------ construction
    @staticmethod
    def _wrap_env(env: GymEnv, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:
        """Vectorise (and Monitor) like SB3, but keep images channel-last: the world model reads ``[H, W, 3]``."""
        if not isinstance(env, VecEnv):
            env = sb3_compat.patch_env(env)
            if monitor_wrapper and not is_wrapped(env, Monitor):
                env = Monitor(env)
            env = DummyVecEnv([lambda: env])  # type: ignore[list-item, return-value]
        return env

    def _attach_world_model(self, model: MFWM | str | os.PathLike[str]) -> None:
        """Resolve, move to ``self.device`` and freeze the world model; set the spaces it implies."""
        if isinstance(model, MFWM):
            wm = model.to(self.device)
        elif isinstance(model, (str, os.PathLike)):
            wm = resolve_model(model, map_location=str(self.device))
            p = Path(os.fspath(model)).expanduser()
            self.model_source = str(p.resolve()) if p.exists() else os.fspath(model)
        else:
            raise TypeError(f"model must be an MFWM, a checkpoint path or a model name, got {type(model).__name__}")
        wm.requires_grad_(False)  # frozen: gradients flow through it into the actions, never into its weights
        self.world_model = wm
        mc = wm.config
        size = int(mc.image_size)
        obs_space = spaces.Dict({"image": spaces.Box(0, 255, (size, size, 3), np.uint8)})
        act_space = spaces.Box(-1.0, 1.0, (int(mc.action_dim),), np.float32)
        if self.env is not None:
            self._check_env_spaces(self.env, obs_space, act_space)
        else:
            self.observation_space, self.action_space = obs_space, act_space

    @staticmethod
    def _check_env_spaces(env: VecEnv, obs_space: spaces.Dict, act_space: spaces.Box) -> None:
        """Raise ValueError unless ``env`` offers ``image`` frames of the model's size and its action size."""
        ob = env.observation_space
        img = ob.spaces.get("image") if isinstance(ob, spaces.Dict) else ob
        want = obs_space["image"].shape
        assert want is not None  # a Box, built by the caller
        if not isinstance(img, spaces.Box) or tuple(img.shape) not in (want, (3, want[0], want[1])):
            raise ValueError(f"env observations must hold 'image' frames of shape {want} (the world model's), got {ob}")
        if not isinstance(env.action_space, spaces.Box) or env.action_space.shape != act_space.shape:
            raise ValueError(f"env action space {env.action_space} does not match the world model's action size "
                             f"{act_space.shape[0]}")

    def _make_target(self, prompt: Any, vlm: Any, horizon: int) -> Any:
        """Target trajectory of ``prompt`` (``features [H+1, F]``, ``stoch [H+1, S*C]``, ``H`` the target horizon the
        alignment expects); records its description."""
        if hasattr(prompt, "features") and hasattr(prompt, "stoch"):
            target = prompt  # a ready TargetTrajectory
        else:
            if isinstance(vlm, (str, dict)):  # a load_vlm spec such as "video-only"

                vlm = load_vlm(vlm, device=str(self.device))
            target = target_from_prompt(self.world_model, prompt, vlm=vlm, horizon=horizon)
        if tuple(target.features.shape[:1]) != (horizon + 1,):
            raise ValueError(f"target trajectory has {target.features.shape[0]} steps but {self.align} alignment of "
                             f"{self.agent_config['horizon'] + 1}-step imagined trajectories needs {horizon + 1}; build it "
                             f"with target_from_prompt(model, prompt, horizon={horizon})")
        text = getattr(target, "prompt", None)
        if not text:
            text = prompt if isinstance(prompt, str) else (str(prompt) if isinstance(prompt, os.PathLike) else
                                                           f"<video array {tuple(np.shape(prompt))}>")
        self.prompt_text = str(text)
        self.prompt_kind = str(getattr(target, "kind", ""))
        return target

    def _setup_model(self) -> None:
        """Build actor, critic, slow critic, optimisers and buffers (SB3 calls this on construction and on load)."""
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.config = ActorCriticConfig.from_dict(self.agent_config)
        cfg, mc = self.config, self.world_model.config
        wmc = mc.world_model
        self.align = getattr(self, "align", None) or "sequence"  # agents saved before `align` existed
        target_len = target_horizon(self.align, cfg.horizon + 1) + 1
        self.policy = GenRLPolicy(mc.stoch_dim + wmc.deter, mc.action_dim, cfg, target_len, wmc.stoch, wmc.classes,
                                  mc.feature_dim, mc.embed_dim).to(self.device)
        lr = self.lr_schedule(1.0)
        self.actor_optimizer = torch.optim.Adam(self.policy.actor.parameters(), lr=lr, eps=cfg.eps)
        self.critic_optimizer = torch.optim.Adam(self.policy.critic.parameters(), lr=lr, eps=cfg.eps)
        if self._init_target is not None:
            t = self._init_target
            with torch.no_grad():
                self.policy.target_features.copy_(torch.as_tensor(t.features).float())
                self.policy.target_stoch.copy_(torch.as_tensor(t.stoch).float())
                emb = getattr(t, "embedding", None)
                if emb is not None and tuple(np.shape(emb)) == tuple(self.policy.target_embedding.shape):
                    self.policy.target_embedding.copy_(torch.as_tensor(emb).float())
                logits = getattr(t, "logits", None)
                if logits is not None:
                    self.policy.target_logits.copy_(torch.as_tensor(logits).float())
                elif self.score_kind in KL_SCORES:
                    raise ValueError(f"score_kind={self.score_kind!r} compares latent distributions but the target has "
                                     "no logits; build it with genrl_gym.prompts.target_from_prompt")
            self._init_target = None
        self._weights = step_weights(cfg.horizon + 1, cfg.discount, self.device)

    # ------------------------------------------------------------------------------------------------ start states
    def _data_free_starts(self) -> State:
        """Data-free start states ``State [batch_size]`` (no gradient): the imagined-episode part first (``episode_fraction``
        of the batch, see :meth:`_episode_starts`), then the reference's mixed states (:meth:`_reference_starts`)."""
        cfg = self.config
        n_episode = cfg.episode_starts
        parts = []
        if n_episode:
            parts.append(self._episode_starts(n_episode))
        if cfg.batch_size - n_episode:
            parts.append(self._reference_starts(cfg.batch_size - n_episode))
        return parts[0] if len(parts) == 1 else State.cat(parts)

    def _reset_states(self, n: int) -> State:
        """``n`` sampled episode-start states: the prior one step after the RSSM's reset (zero state, zero action)."""
        wm = self.world_model
        mc = wm.config
        zero = State.zeros((n,), mc.world_model.deter, mc.world_model.stoch, mc.world_model.classes, device=self.device)
        return wm.img_step(zero, torch.zeros(n, mc.action_dim, device=self.device))

    def _episode_starts(self, n: int) -> State:
        """The current states of ``n`` imagined episodes. Each restarts from :meth:`_reset_states` with probability
        ``horizon / episode_steps`` per update (and on the first update); otherwise it continues from the last state of
        its previous imagined trajectory (set by :meth:`train_step`)."""
        cfg = self.config
        with torch.no_grad():
            chains = getattr(self, "_episodes", None)
            if chains is None or chains.deter.shape[0] != n:
                return self._reset_states(n)
            restart = torch.rand(n, device=self.device) < min(1.0, cfg.horizon / cfg.episode_steps)
            if bool(restart.any()):
                fresh = self._reset_states(n)
                chains = State(*(torch.where(restart.view(-1, *([1] * (a.dim() - 1))), b, a)
                                 for a, b in zip(chains, fresh)))
            return chains

    def _reference_starts(self, total: int) -> State:
        """Reference §10: ``total // 2`` mixed states (deter 0; stoch 50/50 uniform-categorical sample or connector
        state from a random unit embedding, through the aligner), warmed up ``warmup_steps`` prior steps twice, with
        uniform random actions and with the actor; both last states -> ``State [total]`` (no gradient)."""
        cfg, wm = self.config, self.world_model
        mc = wm.config
        n = total // 2
        dev = self.device
        with torch.no_grad():
            uniform = uniform_onehot((n,), mc.world_model.stoch, mc.world_model.classes, device=dev)
            n_seq = math.ceil(n / cfg.connector_steps)
            emb = F.normalize(torch.randn(n_seq, cfg.connector_steps, mc.embed_dim, device=dev), dim=-1)
            conn = wm.connector_rollout(emb, sample=True, align=True).flatten(2).index(slice(0, n))
            use_uniform = (torch.rand(n, device=dev) < 0.5)[:, None]
            stoch = torch.where(use_uniform, uniform, conn.stoch)
            logits = torch.where(use_uniform[..., None], torch.zeros_like(conn.logits), conn.logits)
            state = State(torch.zeros(n, mc.world_model.deter, device=dev), stoch, logits)
            rand_state, actor_state = state, state
            for _ in range(cfg.warmup_steps):
                rand_action = torch.rand(n, mc.action_dim, device=dev) * 2 - 1
                rand_state = wm.img_step(rand_state, rand_action)
                actor_action = self.policy.actor(actor_state.feat()).sample()
                actor_state = wm.img_step(actor_state, actor_action.clamp(-1, 1) if cfg.clip_actions else actor_action)
            return State.cat([rand_state, actor_state])

    def _offline_starts(self) -> State:
        """Posteriors (sampled, no gradient) of a replay batch ``[B, T]`` flattened to ``State [B*T]``."""
        cfg = self.config
        if self._sampler is None:
            if self.store is None:
                raise ValueError("start='offline' needs an episode store: set agent.store = EpisodeStore(...) "
                                 "(GenRLAgent.load(path, store=...)) or use start='data_free'")

            store = self.store if isinstance(self.store, EpisodeStore) else EpisodeStore(self.store, create=False)
            seq_len = min(cfg.seq_len, cfg.batch_size)
            seed = self.seed if self.seed is not None else int(np.random.randint(2**31 - 1))
            self._sampler = SequenceSampler(store, batch_size=max(1, cfg.batch_size // seq_len), seq_len=seq_len,
                                            seed=seed, keys=("image", "action", "is_first"))
        batch = next(self._sampler)
        with torch.no_grad():
            post, _ = self.world_model.observe(batch["image"], batch["action"], batch["is_first"], sample=True)
        return post.flatten(2)

    def start_states(self) -> State:
        """Start states ``State [N]`` of one update (``N = batch_size``; offline: ``(batch_size // T) * T``)."""
        return self._offline_starts() if self.start == "offline" else self._data_free_starts()

    # ------------------------------------------------------------------------------------------------ one update
    def imagine(self, start: State) -> tuple[State, Tensor, Tensor]:
        """Roll the actor ``H`` steps from ``start [N]`` through the frozen prior.

        :return: ``(states [H+1, N], actions [H, N, A], entropy [H, N])`` (entropy of the actor at ``s_0 .. s_{H-1}``);
            differentiable w.r.t. the actor's parameters through the dynamics.
        """
        entropies: list[Tensor] = []
        clip = self.config.clip_actions

        def act(state: State) -> Tensor:
            dist = self.policy.actor(state.feat())  # the model passes detached states
            entropies.append(dist.entropy())
            action = dist.rsample()
            if clip:  # the value the env would apply; the gradient passes as if unclipped (straight-through)
                action = action + (action.clamp(-1.0, 1.0) - action).detach()
            return action

        states, actions = self.world_model.imagine(act, start, self.config.horizon)
        return states, actions, torch.stack(entropies)

    def rewards(self, states: State) -> Tensor:
        """GenRL rewards ``[H+1, N]`` of imagined ``states [H+1, N]`` against the prompt's target."""
        features = self.world_model.reward_features(states.stoch)
        kl = self.score_kind in KL_SCORES
        return trajectory_match(features, self.policy.target_features, score_kind=self.score_kind,  # type: ignore[arg-type]
                                align=self.align,  # type: ignore[arg-type]
                                a_logits=states.logits if kl else None, b_logits=self.policy.target_logits if kl else None)

    def train_step(self) -> dict[str, float]:
        """One behaviour update (start states, imagination, rewards, actor and critic steps, slow-critic copy).

        :return: metrics (floats): actor_loss, critic_loss, reward_mean, return_mean, value_mean, return_offset,
            return_scale, entropy, actor_std, imagined_states.
        """
        cfg, pol = self.config, self.policy
        start = self.start_states()
        states, _, entropy = self.imagine(start)
        n_episode = cfg.episode_starts if self.start == "data_free" else 0
        if n_episode:  # imagined episodes carry on from their last imagined state next update
            self._episodes = states.index((-1, slice(0, n_episode))).detach()
        rewards = self.rewards(states)  # [H+1, N]
        feats = states.feat()  # [H+1, N, S*C + Dd]
        values = pol.slow_critic.value(feats)  # slow critic: bootstrap; differentiable in feats (dynamics backprop)
        returns = lambda_returns(rewards, values, cfg.discount, cfg.lambda_)  # [H, N]
        with torch.no_grad():
            pol.return_ema.copy_(update_return_ema(pol.return_ema, returns, cfg.return_ema_rate, cfg.return_percentiles))
        offset, scale = return_offset_scale(pol.return_ema, cfg.return_min_scale)
        a_loss = actor_loss((returns - offset) / scale, self._weights, entropy[:-1], cfg.entropy_coef)
        c_loss = critic_loss(pol.critic(feats[:-1].detach()), returns, self._weights, pol.critic.bins)

        self.actor_optimizer.zero_grad(set_to_none=True)
        self.critic_optimizer.zero_grad(set_to_none=True)
        (a_loss + c_loss).backward()  # disjoint parameters: the sum gives each network exactly its own gradient
        for opt, net in ((self.actor_optimizer, pol.actor), (self.critic_optimizer, pol.critic)):
            params: list[Tensor] = [p for p in net.parameters() if p.grad is not None]
            nn.utils.clip_grad_norm_(params, cfg.clip)
            opt.step()
            if cfg.weight_decay:
                with torch.no_grad():
                    torch._foreach_mul_(params, 1.0 - cfg.weight_decay)  # decoupled, lr-independent (reference)
        if self._n_updates % cfg.slow_critic_every == 0:  # after updates 0, 100, 200, ... as the reference
            hard_update(pol.slow_critic, pol.critic)
        self._n_updates += 1

        stats = torch.stack([a_loss.detach(), c_loss.detach(), rewards.detach().mean(), returns.detach().mean(),
                             values.detach().mean(), offset, scale, entropy.detach().mean()]).tolist()
        keys = ("actor_loss", "critic_loss", "reward_mean", "return_mean", "value_mean", "return_offset",
                "return_scale", "entropy")
        out = dict(zip(keys, stats))
        out["imagined_states"] = float(states.deter.shape[0] - 1) * states.deter.shape[1]
        return out

    # ------------------------------------------------------------------------------------------------ learn
    def _setup_learn(self, total_timesteps: int, callback: MaybeCallback = None, reset_num_timesteps: bool = True,
                     tb_log_name: str = "run", progress_bar: bool = False) -> tuple[int, BaseCallback]:
        """SB3's ``_setup_learn`` without the environment reset (learning needs no environment)."""
        total_timesteps = sb3_compat.setup_learn(self, total_timesteps, reset_num_timesteps, tb_log_name)
        self._imagined_since_start = 0.0
        return total_timesteps, self._init_callback(callback, progress_bar)

    def _init_callback(self, callback: MaybeCallback, progress_bar: bool = False) -> BaseCallback:
        """As SB3's, with a progress bar that counts updates instead of environment steps; when a
        :class:`~genrl_gym.wrappers.WallClockBudget` ends the run, its time-budget bar instead (a count towards the
        never-reached ``total_timesteps`` would say nothing)."""
        if isinstance(callback, list):
            callback = CallbackList(callback)
        if not isinstance(callback, BaseCallback):
            callback = ConvertCallback(callback)
        budgets = [c for c in _flatten_callbacks(callback) if isinstance(c, WallClockBudget)]
        if progress_bar and budgets:
            budgets[0].progress_bar = True
        elif progress_bar:
            callback = CallbackList([callback, _UpdateProgressBar()])
        callback.init_callback(self)
        return callback

    def learn(self: SelfGenRLAgent, total_timesteps: int, callback: MaybeCallback = None, log_interval: int = 100,
              tb_log_name: str = "GenRLAgent", reset_num_timesteps: bool = True,
              progress_bar: bool = False) -> SelfGenRLAgent:
        """Run ``total_timesteps`` behaviour updates in imagination (one timestep = one update).

        :param total_timesteps: number of updates (paper: 50,000).
        :param callback: SB3 callback(s); ``on_step`` runs after every update (return False to stop).
        :param log_interval: dump the logger (stdout with ``verbose=1``, TensorBoard) every this many updates; 0 = never.
        :param tb_log_name: TensorBoard run name.
        :param reset_num_timesteps: restart the timestep counter (the slow-critic schedule continues regardless).
        :param progress_bar: show a tqdm/rich bar of updates; with a :class:`~genrl_gym.wrappers.WallClockBudget` among
            the callbacks, its bar of the time budget (seconds, updates done, remaining time) instead.
        :return: self.
        """
        total_timesteps, callback = self._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name,
                                                      progress_bar)
        callback.on_training_start(locals(), globals())
        optimizers: list[torch.optim.Optimizer] = [self.actor_optimizer, self.critic_optimizer]
        while self.num_timesteps < total_timesteps:
            callback.on_rollout_start()
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            self._update_learning_rate(optimizers)
            metrics = self.train_step()
            self.num_timesteps += 1
            self._imagined_since_start += metrics.pop("imagined_states")
            for key, value in metrics.items():
                self.logger.record_mean(f"train/{key}", value)
            callback.update_locals(locals())
            if not callback.on_step():
                break
            callback.on_rollout_end()
            if log_interval > 0 and self.num_timesteps % log_interval == 0:
                self.dump_logs()
        callback.on_training_end()
        return self

    def dump_logs(self) -> None:
        """Record time/fps (= updates per second), imagined states per second and counters; write the logger."""
        elapsed = max((time.time_ns() - self.start_time) / 1e9, sys.float_info.epsilon)
        updates = self.num_timesteps - self._num_timesteps_at_start
        self.logger.record("time/fps", updates / elapsed)
        self.logger.record("time/updates_per_s", updates / elapsed)
        self.logger.record("time/imagined_states_per_s", getattr(self, "_imagined_since_start", 0.0) / elapsed)
        self.logger.record("time/time_elapsed", int(elapsed), exclude="tensorboard")
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.dump(step=self.num_timesteps)

    # ------------------------------------------------------------------------------------------------ acting
    def _image_batch(self, observation: Any) -> tuple[np.ndarray, bool]:
        """``observation`` (dict with ``image``, or the frames) -> (uint8 ``[N, H, W, 3]``, was-batched)."""
        image = observation["image"] if isinstance(observation, dict) else observation
        if isinstance(image, Tensor):
            image = image.detach().cpu().numpy()
        image = np.asarray(image)
        size = int(self.world_model.config.image_size)
        batched = image.ndim == 4
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4:
            raise ValueError(f"observation image must be [H, W, 3] or [N, H, W, 3] uint8, got shape {image.shape}")
        if image.shape[1:] == (3, size, size):  # channel-first (e.g. VecTransposeImage) -> channel-last
            image = image.transpose(0, 2, 3, 1)
        if image.shape[1:] != (size, size, 3):
            raise ValueError(f"observation image must be {size}x{size}x3 (the world model's frames), got {image.shape[1:]}")
        if image.dtype != np.uint8:
            image = np.clip(image, 0, 255).astype(np.uint8)
        return image, batched

    @torch.no_grad()
    def predict(self, observation: np.ndarray | dict[str, np.ndarray], state: tuple[np.ndarray, ...] | None = None,
                episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Act on real frames, recurrently through the world-model posterior.

        :param observation: ``{"image": uint8 [H, W, 3]}`` or batched ``[N, H, W, 3]`` (channel-first accepted; a bare
            array is taken as the image).
        :param state: the previous call's state: ``(deter [N, Dd], stoch [N, S*C], logits [N, S, C], prev_action
            [N, A])``; None = start of episodes.
        :param episode_start: bool ``[N]``; True resets that row's latent and previous action (None: all True when
            ``state`` is None, else all False).
        :param deterministic: posterior modes and the actor's mean; else a sampled posterior and action.
        :return: ``(actions, state)``; actions float32 ``[N, A]`` (``[A]`` for an unbatched observation), clipped to
            ``[-1, 1]``.
        """
        image, batched = self._image_batch(observation)
        n = image.shape[0]
        wm, dev = self.world_model, self.device
        if state is None:
            prev = wm.initial_state(n)
            prev_action = torch.zeros(n, self.action_space.shape[0], device=dev)
            first = np.ones(n, dtype=bool) if episode_start is None else np.asarray(episode_start, dtype=bool).reshape(n)
        else:
            if len(state) != 4 or np.shape(state[0])[0] != n:
                raise ValueError(f"state must be the 4-tuple returned by predict for the same {n} observations")
            deter, stoch, logits, act = (torch.as_tensor(np.asarray(x), dtype=torch.float32, device=dev) for x in state)
            prev, prev_action = State(deter, stoch, logits), act
            first = np.zeros(n, dtype=bool) if episode_start is None else np.asarray(episode_start, dtype=bool).reshape(n)
        post = wm.obs_step(prev, prev_action, image, first, sample=not deterministic)
        dist = self.policy.actor(post.feat())
        action = (dist.mean if deterministic else dist.sample()).clamp(-1.0, 1.0)
        new_state = tuple(x.detach().cpu().numpy() for x in (post.deter, post.stoch, post.logits, action))
        actions = action.cpu().numpy().astype(np.float32)
        return (actions if batched else actions[0]), new_state

    # ------------------------------------------------------------------------------------------------ save / load
    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "world_model", "config", "store", "vlm", "prompt", "_sampler",
                "_init_target", "_weights"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "actor_optimizer", "critic_optimizer"], []

    def save(self, path: str | os.PathLike[str], exclude: list[str] | None = None,  # type: ignore[override]
             include: list[str] | None = None, *,
             model_storage: Literal["embed", "embed_fp16", "reference"] = "embed") -> Path:
        """Write the agent to one zip file atomically (SB3's layout plus the world model and a header).

        :param path: target file (``.zip`` is appended when it has no suffix).
        :param exclude: / :param include: as SB3's ``save``.
        :param model_storage: ``"embed"`` (fp32 world model inside: exact reload), ``"embed_fp16"`` (half the size;
            deterministic actions then differ slightly), or ``"reference"`` (only the checkpoint path / store name the
            agent was built from; that file must still be there, unchanged, at load time).
        :return: the path written.
        """
        if model_storage not in ("embed", "embed_fp16", "reference"):
            raise ValueError(f"model_storage={model_storage!r}; choose 'embed', 'embed_fp16' or 'reference'")
        if model_storage == "reference" and self.model_source is None:
            raise ValueError("model_storage='reference' needs an agent built from a checkpoint path or model name; this "
                             "one got an MFWM object: use model_storage='embed', or MFWM.save it and pass the path")
        path = Path(path)
        if path.suffix == "":
            path = path.with_suffix(".zip")

        wm = self.world_model
        header = {"format": AGENT_FORMAT, "version": AGENT_FORMAT_VERSION, "model_storage": model_storage,
                  "model_source": self.model_source, "domain": wm.domain, "prompt": self.prompt_text,
                  # what load() checks a world model against (MFWM.weights_sha256: fp32 weights, whatever the storage)
                  "world_model": {"sha256": wm.weights_sha256(), "domain": wm.domain,
                                  "vlm": identity_dict(wm.vlm_identity)}}
        with atomic_write(path, "w+b") as f:
            super().save(f, exclude=exclude, include=include)  # type: ignore[arg-type]
            with zipfile.ZipFile(f, mode="a") as archive:
                archive.writestr(_HEADER, json.dumps(header, indent=2))
                if model_storage != "reference":
                    buf = io.BytesIO()
                    torch.save(self.world_model.to_payload(half=model_storage == "embed_fp16"), buf)
                    archive.writestr(_MFWM_ENTRY, buf.getvalue())
        return path

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfGenRLAgent],
        path: str | os.PathLike[str],
        env: GymEnv | None = None,
        device: torch.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        *,
        model: MFWM | str | os.PathLike[str] | None = None,
        store: Any = None,
        allow_model_mismatch: bool = False,
        **kwargs: Any,
    ) -> SelfGenRLAgent:
        """Rebuild an agent written by :meth:`save`.

        The world model it attaches to (``model=``, or the checkpoint a ``model_storage="reference"`` agent names) is
        checked against the one the agent was trained with, recorded in the file's header: its domain, its VLM
        identity and the SHA-256 of its fp32 weights (:meth:`MFWM.weights_sha256`; not of a file, so the same weights
        match wherever they are stored). A different domain or VLM is always refused (an actor of walker's 6 actions
        would silently drive a cheetah); different weights of the same domain and VLM (e.g. a retrained model) are
        refused unless ``allow_model_mismatch=True``, which loads them with a warning. Agents saved before the header
        recorded the weights load with a warning (only their domain is checked). An embedded world model is the agent's
        own and is not compared (its file carries its own checksum).

        :param path: the zip file (``.zip`` may be omitted).
        :param env: optional env for callbacks (its spaces must match the model's).
        :param device: where networks and world model go.
        :param model: use this world model instead of the stored one / the stored reference.
        :param store: episode store for further offline learning.
        :param allow_model_mismatch: accept a world model of the same domain and VLM whose weights differ from the
            recorded ones (the actor and critic were trained on another model's latents: re-train or fine-tune).
        :param kwargs: attributes to override after loading (SB3 convention), e.g. ``verbose=1``.
        :raises FileNotFoundError: no such file. :raises CheckpointError: not a GenRLAgent zip, truncated, from a
            newer format, or a world model other than the agent's (see above).
        """
        p = Path(path)
        if not p.is_file() and p.suffix == "" and p.with_suffix(".zip").is_file():
            p = p.with_suffix(".zip")
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such GenRLAgent file (written by GenRLAgent.save)")
        try:
            with zipfile.ZipFile(p) as archive:
                names = set(archive.namelist())
                if _HEADER not in names:
                    raise CheckpointError(f"{p}: not a GenRLAgent file (no {_HEADER}); an SB3 model of another "
                                          "algorithm loads with that algorithm's .load")
                header = json.loads(archive.read(_HEADER).decode())
                mfwm_bytes = archive.read(_MFWM_ENTRY) if _MFWM_ENTRY in names else None
                pickled = sb3_compat.pickled_keys(sb3_compat.read_data(archive)) if sb3_compat.DATA_ENTRY in names else []
            if header.get("format") != AGENT_FORMAT:
                raise CheckpointError(f"{p}: unknown format {header.get('format')!r} (expected {AGENT_FORMAT!r})")
            if int(header.get("version", 0)) > AGENT_FORMAT_VERSION:
                raise CheckpointError(f"{p}: agent format version {header['version']} is newer than this genrl-gym reads "
                                      f"({AGENT_FORMAT_VERSION}); upgrade genrl-gym")
            # SB3 stores some attributes as cloudpickle blobs, which run code when unpickled: none is read. The spaces
            # and the policy class come from the world model, the episode buffers start empty, the learning rate is
            # the recorded agent config's (pass custom_objects={"learning_rate": schedule} for a schedule).
            safe = {key: None for key in pickled}
            data, params, _ = sb3_compat.load_zip(p, device=device, custom_objects={**safe, **(custom_objects or {})},
                                                  print_system_info=print_system_info)
        except CheckpointError:
            raise
        except (zipfile.BadZipFile, EOFError, KeyError, ValueError, RuntimeError, OSError) as e:
            raise CheckpointError(f"{p}: truncated or corrupt GenRLAgent file ({type(e).__name__}: {e}); save it again") from e
        if data is None:
            raise CheckpointError(f"{p}: GenRLAgent file without its 'data' entry; save it again")
        dev = sb3_utils.get_device(device)
        embedded = model is None and mfwm_bytes is not None
        if model is None:
            if mfwm_bytes is not None:
                payload = torch.load(io.BytesIO(mfwm_bytes), map_location="cpu", weights_only=True)
                model = MFWM.from_payload(payload, f"{p}:{_MFWM_ENTRY}", map_location=dev)
            elif header.get("model_source"):
                model = header["model_source"]
            else:
                raise CheckpointError(f"{p}: holds neither a world model nor a reference to one; pass model=...")
        agent = cls(model=model, prompt=None, env=env, device=device, _init_setup_model=False)
        if not embedded:
            _check_world_model(p, header, agent.world_model, allow_model_mismatch)
        source = agent.model_source
        for key in ("policy_class", "observation_space", "action_space", "device"):
            data.pop(key, None)  # ours come from the world model (and the env, if given)
        if env is not None:
            data.pop("n_envs", None)
        data = {k: v for k, v in data.items() if not (k in pickled and v is None and k not in (custom_objects or {}))}
        if "learning_rate" not in data:  # it was a pickled schedule: the config's constant rate
            data["learning_rate"] = float(data.get("agent_config", {}).get("learning_rate", agent.learning_rate))
        agent.__dict__.update(data)
        agent.model_source = source or header.get("model_source")
        agent.store = store
        agent.__dict__.update(kwargs)
        agent._setup_model()
        agent.set_parameters(params, exact_match=True, device=device)
        return agent

    # ------------------------------------------------------------------------------------------------ misc
    @property
    def target_features(self) -> Tensor:
        """The prompt's target reward features ``[H+1, F]``."""
        return self.policy.target_features

    def __repr__(self) -> str:
        c = self.config
        return (f"GenRLAgent(domain={self.world_model.domain!r}, prompt={self.prompt_text!r}, start={self.start!r}, "
                f"preset={c.preset!r}, batch_size={c.batch_size}, horizon={c.horizon}, updates={self._n_updates})")
