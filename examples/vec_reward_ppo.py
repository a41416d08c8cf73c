"""SB3's PPO on 4 pixel envs whose rewards come from one batched GenRL reward model (``VecGenRLReward``).

One world-model call scores all envs per step; ``info["task_reward"]`` carries each env's true reward.

    python examples/vec_reward_ppo.py --steps 50000     # about 20 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from genrl_gym.envs import make_pixel_env
from genrl_gym.prompts import example
from genrl_gym.wrappers import VecGenRLReward


def main(steps: int, n_envs: int, seed: int = 0) -> dict[str, float]:
    """Train PPO on the batched GenRL reward of walker walk for ``steps`` env steps (all envs together).

    :param steps: total environment steps over all envs.
    :param n_envs: number of pixel envs in the vector env.
    :param seed: seed of the envs and of PPO.
    :return: mean GenRL and true reward per step over the last rollout.
    """
    venv = VecGenRLReward(make_vec_env(lambda: make_pixel_env("walker", "walk"), n_envs=n_envs, seed=seed),
                          model="walker", prompt=example("walker", "walk"))
    n_steps = max(8, min(256, steps // n_envs))
    agent = PPO("MultiInputPolicy", venv, n_steps=n_steps, batch_size=min(64, n_steps * n_envs), seed=seed)
    agent.learn(steps)
    obs = venv.reset()
    rewards, task_rewards = [], []
    for _ in range(n_steps):
        action, _ = agent.predict(obs, deterministic=True)
        obs, reward, _, infos = venv.step(action)
        rewards.append(np.mean(reward))
        task_rewards.append(np.mean([info["task_reward"] for info in infos]))
    return {"genrl_reward_per_step": float(np.mean(rewards)), "task_reward_per_step": float(np.mean(task_rewards))}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--n-envs", type=int, default=4)
    print(main(**vars(parser.parse_args())))
