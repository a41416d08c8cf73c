"""The model-free baseline reward of the GenRL paper (and of VLM-RM): cosine similarity in the VLM's embedding space.

Each step, the last ``window`` frames of every env (8 by default, the VLM's window) are embedded by the VLM and the
reward is the cosine between that embedding and the prompt's (text or video, embedded by the same VLM). No world model
is involved: this is what GenRL compares against (the GenRL paper's model-free VLM-reward baselines).

At an episode start the window is padded by repeating the first frame, so the first rewards already compare a full
window. With SB3's auto-reset, the reward of a finishing step is computed on the episode's last frame (from
``infos[i]["terminal_observation"]``) and the window then restarts from the new episode's first frame.
"""

from __future__ import annotations

import os
from typing import Any, cast

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn
from torch import Tensor

from genrl_gym.prompts import embed_prompt_with
from genrl_gym.utils import PromptError
from genrl_gym.vlm import load_vlm
from genrl_gym.wrappers.gym_reward import image_layout, task_rewards, to_hwc

__all__ = ["VecEmbeddingSimilarityReward", "embedding_similarity"]


def embedding_similarity(window_embeddings: Tensor, prompt_embedding: Tensor) -> Tensor:
    """Cosine similarity ``[N]`` between window embeddings ``[N, D]`` and one prompt embedding ``[D]`` (any norms)."""
    w = torch.nn.functional.normalize(window_embeddings.float(), dim=-1)
    p = torch.nn.functional.normalize(prompt_embedding.float().reshape(-1), dim=-1)
    return w @ p


class VecEmbeddingSimilarityReward(VecEnvWrapper):
    """Replace a VecEnv's rewards with ``cos(VLM(last window frames), VLM(prompt))`` (the paper's model-free baseline).

    :param venv: an SB3 VecEnv of pixel envs (observation ``{"image": uint8 [S, S, 3]}``, or a Box image; channel-first
        is accepted).
    :param vlm: a VLM instance or a :func:`genrl_gym.vlm.load_vlm` spec (default ``"video-only"``, the offline default).
    :param prompt: text (needs a VLM with language), a video path or a uint8 video ``[T, H, W, 3]``.
    :param window: frames per embedded window (default: the VLM's own window, 8).
    :param obs_key: the image entry of a Dict observation.
    :param domain: only used to word errors (e.g. the text-prompt refusal of a video-only VLM).

    ``step_wait`` returns rewards ``float32 [N]`` in ``[-1, 1]``; ``infos[i]["task_reward"]`` keeps the env's true reward
    and ``infos[i]["embedding_similarity"]`` repeats the score.
    """

    def __init__(self, venv: VecEnv, vlm: Any = "video-only", prompt: str | os.PathLike[str] | np.ndarray | None = None,
                 *, window: int | None = None, obs_key: str = "image", domain: str = "walker") -> None:
        super().__init__(venv)

        if prompt is None:
            raise PromptError("VecEmbeddingSimilarityReward needs a prompt: text (with a text-capable VLM), a video path "
                              "or a uint8 video [T, H, W, 3]")
        self.vlm = vlm if hasattr(vlm, "embed_video") else load_vlm(vlm)
        space = venv.observation_space
        box = cast(spaces.Box, space.spaces[obs_key] if hasattr(space, "spaces") and obs_key in space.spaces else space)
        size = int(box.shape[0] if box.shape[-1] == 3 else box.shape[-1])
        self._key, self._layout = image_layout(space, size, obs_key)
        self.window = int(window or cast(int, getattr(self.vlm, "window", 8)))
        if self.window < 1:
            raise ValueError(f"window={window} must be >= 1 frame")
        self.prompt_embedding, self.prompt_kind = embed_prompt_with(self.vlm, prompt, image_size=size, domain=domain)
        self._frames = np.zeros((venv.num_envs, self.window, size, size, 3), dtype=np.uint8)

    def _images(self, obs: Any) -> np.ndarray:
        img = obs[self._key] if self._key is not None else obs
        return to_hwc(np.asarray(img), self._layout)

    def _start(self, idx: np.ndarray, images: np.ndarray) -> None:
        """Fill the windows of envs ``idx`` with their first frame ``[len(idx), S, S, 3]``."""
        self._frames[idx] = images[:, None]

    def _score(self) -> np.ndarray:
        with torch.no_grad():
            e = self.vlm.embed_video(self._frames)
        return embedding_similarity(torch.as_tensor(e), self.prompt_embedding).numpy().astype(np.float32)

    def reset(self) -> VecEnvObs:
        """Reset all envs; every window starts as copies of the first frame."""
        obs = self.venv.reset()
        self._start(np.arange(self.num_envs), self._images(obs))
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        """``(obs, rewards float32 [N] = cosine similarities, dones [N], infos)``."""
        obs, rewards, dones, infos = self.venv.step_wait()
        images = self._images(obs)
        done_idx = np.nonzero(np.asarray(dones, dtype=bool))[0]
        frames = images.copy() if len(done_idx) else images
        for i in done_idx:  # SB3 has already reset env i: score its episode's last frame
            term = infos[i].get("terminal_observation")
            if term is None:
                raise RuntimeError(f"env {i} is done but infos[{i}] has no 'terminal_observation': "
                                   "VecEmbeddingSimilarityReward needs an SB3 VecEnv (DummyVecEnv/SubprocVecEnv)")
            frames[i] = to_hwc(np.asarray(term[self._key] if self._key is not None else term), self._layout)
        self._frames[:, :-1] = self._frames[:, 1:]
        self._frames[:, -1] = frames
        scores = self._score()
        if len(done_idx):
            self._start(done_idx, images[done_idx])
        task_rewards(infos, rewards)
        for j, info in enumerate(infos):
            info["embedding_similarity"] = float(scores[j])
        return obs, scores, dones, infos
