"""SB3's SAC on the GenRL reward of ``GenRL/Walker-v0``, then its true return.

The env's reward is the shipped walker model's score of how well the last frames match the prompt (here the shipped
"stand" clip); ``info["task_reward"]`` carries the true reward, used only to evaluate.

    python examples/gym_reward_sac.py --steps 20000      # about 25 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
from stable_baselines3 import SAC

import genrl_gym  # noqa: F401  (registers GenRL/<Domain>-v0)
from genrl_gym.prompts import example


def main(steps: int, eval_frames: int, seed: int = 0) -> dict[str, float]:
    """Train SAC on the GenRL reward for ``steps`` env steps, then run one deterministic episode.

    :param steps: SAC environment steps (each is 2 simulator frames).
    :param eval_frames: length of the evaluation episode in simulator frames.
    :param seed: seed of the env and of SAC.
    :return: ``{"genrl_return": ..., "task_return": ...}`` of the evaluation episode.
    """
    env = gym.make("GenRL/Walker-v0", model="walker", prompt=example("walker", "stand"), task="stand")
    agent = SAC("MultiInputPolicy", env, learning_starts=min(1000, steps // 2), buffer_size=max(steps, 1000), seed=seed)
    agent.learn(steps)
    env = gym.make("GenRL/Walker-v0", model="walker", prompt=example("walker", "stand"), task="stand",
                   episode_frames=eval_frames)
    obs, _ = env.reset(seed=seed + 1000)
    genrl_return = task_return = 0.0
    done = False
    while not done:
        action, _ = agent.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, info = env.step(action)
        genrl_return += float(reward)
        task_return += float(np.asarray(info["task_reward"]))
        done = terminated or truncated
    return {"genrl_return": genrl_return, "task_return": task_return}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--eval-frames", type=int, default=1000)
    print(main(**vars(parser.parse_args())))
