"""Stable-Baselines3 callbacks: GenRL scores logged next to the true task reward, and a wall-time budget.

Runs that a time budget ends (:func:`learn_for`) pass SB3 a huge ``total_timesteps`` (:data:`BUDGET_TOTAL_TIMESTEPS`);
SB3's own progress bar would then count towards it (``650/1,000,000,000 [0:04:00 < 105967:26:35]``), so those runs show
:class:`WallClockBudget`'s bar instead: seconds of the budget, steps (or updates) done and the true remaining time.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, TypeVar

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from tqdm.auto import tqdm

__all__ = ["GenRLLogCallback", "WallClockBudget", "learn_for", "BUDGET_TOTAL_TIMESTEPS"]

#: ``total_timesteps`` of runs that a wall-time budget ends; never reached (schedules see progress_remaining ~ 1).
BUDGET_TOTAL_TIMESTEPS = 10**9
_BAR_REFRESH_S = 0.25
_Learner = TypeVar("_Learner")


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
    every finished episode (sum of ``infos[i]["task_reward"]``, which every genrl-gym reward wrapper writes); for
    GenRLAgent, which steps no env, the mean imagined reward of each update (``locals["metrics"]["reward_mean"]``).

    With ``progress_bar=True`` it shows a tqdm bar of the *time* budget: ``time budget: 40%|####  | 96/240 s
    [01:36<02:24, 650 updates, 6.8/s]`` (seconds used of the budget, then elapsed < remaining time of the budget, steps
    or updates done and their rate). Use it instead of ``learn(..., progress_bar=True)``, whose bar counts towards the
    never-reached ``total_timesteps``; :func:`learn_for` does both.

    :param seconds: wall-time budget in seconds, counted from the start of ``learn``.
    :param progress_bar: show the time-budget bar (stderr) while training.
    """

    def __init__(self, seconds: float, verbose: int = 0, *, progress_bar: bool = False) -> None:
        super().__init__(verbose)
        if not seconds > 0:
            raise ValueError(f"seconds={seconds} must be > 0")
        self.seconds = float(seconds)
        self.progress_bar = progress_bar
        self.pbar: Any = None
        self.curve: list[tuple[float, int, float]] = []
        self.t0 = 0.0
        self._running: np.ndarray | None = None
        self._start_steps = 0
        self._last_draw = 0.0

    def _on_training_start(self) -> None:
        self.t0 = time.time()
        self._start_steps = self.num_timesteps
        if self.progress_bar:
            self.close_bar()
            # the text after the bar is ours (in tqdm's `unit` field): tqdm would time its own start and estimate the rest
            self.pbar = tqdm(total=self.seconds, desc="time budget", bar_format="{desc}: {percentage:3.0f}%|{bar}| {unit}")
            self._draw(0.0)

    @property
    def unit(self) -> str:
        """What one timestep is: ``"updates"`` for GenRLAgent (its ``progress_unit``), else ``"steps"`` (env steps)."""
        return str(getattr(self.model, "progress_unit", "steps"))

    @property
    def steps_done(self) -> int:
        """Timesteps (env steps or updates) since this ``learn`` started."""
        return int(self.num_timesteps - self._start_steps)

    def _draw(self, elapsed: float) -> None:
        self._last_draw = time.time()
        self.pbar.n = min(elapsed, self.seconds)
        rate = self.steps_done / elapsed if elapsed > 0 else 0.0
        left = max(self.seconds - elapsed, 0.0)
        self.pbar.unit = (f"{self.pbar.n:.0f}/{self.seconds:.0f} s [{tqdm.format_interval(round(elapsed))}<"
                          f"{tqdm.format_interval(round(left))}, {self.steps_done:,} {self.unit}, {rate:.1f}/s]")
        self.pbar.refresh()

    def close_bar(self) -> None:
        """Draw the final state and close the bar (idempotent; ``learn_for`` calls it even when learning fails)."""
        if self.pbar is not None:
            self._draw(self.elapsed)
            self.pbar.close()
            self.pbar = None

    def _on_training_end(self) -> None:
        self.close_bar()

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
                self._running[i] += float(info.get("task_reward", 0.0))
                if i < len(dones) and dones[i]:
                    self.curve.append((elapsed, self.num_timesteps, float(self._running[i])))
                    self._running[i] = 0.0
        if self.pbar is not None and time.time() - self._last_draw >= _BAR_REFRESH_S:
            self._draw(elapsed)
        return elapsed < self.seconds


def learn_for(learner: _Learner, seconds: float, *, callback: Any = None, progress_bar: bool = False,
              **learn_kwargs: Any) -> WallClockBudget:
    """Train ``learner`` (any SB3 algorithm or :class:`~genrl_gym.agents.GenRLAgent`) for ``seconds`` of wall time.

    The one place that pairs a time budget with the never-reached :data:`BUDGET_TOTAL_TIMESTEPS`: SB3's step-count
    progress bar is turned off and, with ``progress_bar=True``, the budget's own bar shows seconds, steps (updates) done
    and the remaining time of the budget.

    :param learner: has ``learn(total_timesteps, callback=, progress_bar=, **kwargs)``.
    :param seconds: wall-time budget.
    :param callback: further SB3 callback(s), run after the budget's.
    :param progress_bar: show the time-budget bar.
    :param learn_kwargs: passed to ``learn`` (e.g. ``tb_log_name``).
    :return: the :class:`WallClockBudget` (``elapsed``, ``curve``, ``steps_done``).
    """
    budget = WallClockBudget(seconds, progress_bar=progress_bar)
    extra = [] if callback is None else (list(callback) if isinstance(callback, list) else [callback])
    try:
        learner.learn(total_timesteps=BUDGET_TOTAL_TIMESTEPS, callback=[budget, *extra],  # type: ignore[attr-defined]
                      progress_bar=False, **learn_kwargs)
    finally:
        budget.close_bar()
    return budget
