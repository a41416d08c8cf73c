"""Stable-Baselines3 callbacks: GenRL scores logged next to the true task reward, and a wall-time budget."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["GenRLLogCallback", "WallClockBudget"]


class GenRLLogCallback(BaseCallback):
    """Log the GenRL score and the true task reward to SB3's logger (works with on- and off-policy algorithms).

    Reads ``infos[i]["genrl_score"]`` and ``infos[i]["task_reward"]`` (set by ``GenRL/<Domain>-v0`` envs and by
    :class:`~genrl_gym.wrappers.VecGenRLReward`); steps without a key are skipped for that key. Logged keys
    (``prefix`` default ``"genrl"``):

    - ``genrl/score_mean``, ``genrl/task_reward_mean``: per-step means over all env steps since the last log dump;
    - ``genrl/ep_score_mean``, ``genrl/ep_task_return_mean``: episode sums, averaged over the last ``window`` episodes
      (written at the end of each rollout once an episode has finished).

    :param window: episodes in the episode averages (SB3's ``stats_window_size`` default, 100).
    :param prefix: logger namespace.
    """

    def __init__(self, window: int = 100, prefix: str = "genrl", verbose: int = 0) -> None:
        super().__init__(verbose)
        self.prefix = prefix
        self.ep_scores: deque[float] = deque(maxlen=window)
        self.ep_task_returns: deque[float] = deque(maxlen=window)
        self._score_sum: np.ndarray | None = None
        self._task_sum: np.ndarray | None = None

    def _on_step(self) -> bool:
        infos: list[dict[str, Any]] = self.locals.get("infos") or []
        dones = np.asarray(self.locals.get("dones", np.zeros(len(infos), dtype=bool)), dtype=bool).reshape(-1)
        if self._score_sum is None or len(self._score_sum) != len(infos):
            self._score_sum, self._task_sum = np.zeros(len(infos)), np.zeros(len(infos))
        assert self._task_sum is not None
        for i, info in enumerate(infos):
            if "genrl_score" in info:
                self.logger.record_mean(f"{self.prefix}/score_mean", float(info["genrl_score"]))
                self._score_sum[i] += float(info["genrl_score"])
            if "task_reward" in info:
                self.logger.record_mean(f"{self.prefix}/task_reward_mean", float(info["task_reward"]))
                self._task_sum[i] += float(info["task_reward"])
            if i < len(dones) and dones[i]:
                self.ep_scores.append(float(self._score_sum[i]))
                self.ep_task_returns.append(float(self._task_sum[i]))
                self._score_sum[i] = self._task_sum[i] = 0.0
        return True

    def _on_rollout_end(self) -> None:
        if self.ep_scores:
            self.logger.record(f"{self.prefix}/ep_score_mean", float(np.mean(self.ep_scores)))
            self.logger.record(f"{self.prefix}/ep_task_return_mean", float(np.mean(self.ep_task_returns)))


class WallClockBudget(BaseCallback):
    """Stop training after ``seconds`` of wall time and record a learning curve (for equal-time comparisons).

    Works with any SB3 algorithm and with :class:`~genrl_gym.agents.GenRLAgent`. :attr:`curve` holds
    ``(seconds since training start, num_timesteps, value)`` rows: for algorithms that step envs, the true return of
    every finished episode (sum of ``infos[i]["task_reward"]``, else of ``infos[i]["original_env_rew"]``); for
    GenRLAgent, which steps no env, the mean imagined reward of each update (``locals["metrics"]["reward_mean"]``).

    :param seconds: wall-time budget in seconds, counted from the start of ``learn``.
    """

    def __init__(self, seconds: float, verbose: int = 0) -> None:
        super().__init__(verbose)
        if not seconds > 0:
            raise ValueError(f"seconds={seconds} must be > 0")
        self.seconds = float(seconds)
        self.curve: list[tuple[float, int, float]] = []
        self.t0 = 0.0
        self._running: np.ndarray | None = None

    def _on_training_start(self) -> None:
        self.t0 = time.time()

    @property
    def elapsed(self) -> float:
        """Seconds since training started."""
        return time.time() - self.t0

    def _on_step(self) -> bool:
        elapsed = self.elapsed
        metrics = self.locals.get("metrics")
        if isinstance(metrics, dict) and "reward_mean" in metrics:
            self.curve.append((elapsed, self.num_timesteps, float(metrics["reward_mean"])))
        infos: list[dict[str, Any]] = self.locals.get("infos") or []
        if infos:
            dones = np.asarray(self.locals.get("dones", np.zeros(len(infos), dtype=bool)), dtype=bool).reshape(-1)
            if self._running is None or len(self._running) != len(infos):
                self._running = np.zeros(len(infos))
            for i, info in enumerate(infos):
                self._running[i] += float(info.get("task_reward", info.get("original_env_rew", 0.0)))
                if i < len(dones) and dones[i]:
                    self.curve.append((elapsed, self.num_timesteps, float(self._running[i])))
                    self._running[i] = 0.0
        return elapsed < self.seconds
