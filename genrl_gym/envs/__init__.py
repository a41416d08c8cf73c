"""dm_control tasks as pixel Gymnasium environments, with GenRL's task table and custom tasks.

- :data:`TASKS` / :data:`DOMAINS` / :func:`get_task`: every task with its prompt, camera and score normalisers.
- :func:`make_pixel_env`: a Gymnasium env with 64x64 uint8 frames, actions in [-1, 1] and action repeat.
- :func:`render_env_kwargs`: its arguments that render frames as a world model's training data were rendered.
"""

from __future__ import annotations

from genrl_gym.envs.pixel_env import PixelEnv, make_pixel_env, render_env_kwargs
from genrl_gym.envs.tasks import DOMAINS, TASKS, TaskSpec, env_id, get_task

__all__ = ["DOMAINS", "TASKS", "PixelEnv", "TaskSpec", "env_id", "get_task", "make_pixel_env", "render_env_kwargs"]
