"""Pixel Gymnasium environments over dm_control tasks (GenRL's observation/action conventions).

``make_pixel_env("walker", "run")`` gives what GenRL trains and evaluates on: 64x64 uint8 RGB frames from the
task's camera, actions in [-1, 1], action repeat 2 with summed rewards, 1000-frame episodes (500 agent steps).

Stack: our per-domain loader builds the dm_control ``control.Environment`` (suite task or one of GenRL's custom
tasks), Shimmy's ``DmControlCompatibilityV0`` turns it into a Gymnasium env (dm_env time steps -> Gymnasium
5-tuples, seeding of the task's ``RandomState``), and :class:`PixelEnv` adds pixels, action rescaling and repeat
and the episode length. Pixels come from our own cached ``dm_control`` camera rather than Shimmy's ``render()``:
Shimmy calls ``physics.render`` which allocates a new scene every frame, and it offers no way to set the
render quality.

Render quality: MuJoCo's offscreen defaults (4x multisampling, shadows, floor reflection) cost most of the time
of a 64x64 frame on a CPU (Mesa) renderer; ``render_quality="fast"`` turns the three off (the bodies look the
same; the floor loses the walker's mirror image and shadow). The setting is part of
``env.unwrapped.render_settings`` so datasets and models record what they were fed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium
import numpy as np
import shimmy
from dm_control.mujoco import engine
from gymnasium import spaces
from gymnasium.utils import seeding

from genrl_gym import _compat  # noqa: F401  (MUJOCO_GL + torch render guard before dm_control loads)
from genrl_gym.envs import domains
from genrl_gym.envs.tasks import TaskSpec, get_task

RENDER_QUALITIES = ("fast", "default")
# Render flags switched off by "fast" (MuJoCo ``mjtRndFlag`` names, lower case as dm_control takes them).
_FAST_FLAG_OVERRIDES = {"shadow": False, "reflection": False}
_MAX_IMAGE_SIZE = 4096


def _check_positive_int(name: str, value: Any, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; {hint}")
    return int(value)


class PixelEnv(gymnasium.Env[dict[str, np.ndarray], np.ndarray]):
    """A dm_control task seen through its camera; build it with :func:`make_pixel_env` (same arguments)."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, domain: str, task: str, *, image_size: int = 64, action_repeat: int = 2, proprio: bool = False,
                 render_quality: str = "fast", episode_frames: int = 1000, camera_id: int | None = None,
                 seed: int | None = None, render_mode: str | None = None, render_size: int | None = None,
                 pixels: bool = True) -> None:
        if not pixels and not proprio:
            raise ValueError("pixels=False needs proprio=True: the observation would be empty.")
        self.task_spec: TaskSpec = get_task(domain, task)
        self.image_size = _check_positive_int("image_size", image_size, "GenRL uses 64 (pixels per side).")
        if self.image_size > _MAX_IMAGE_SIZE:
            raise ValueError(f"image_size={image_size} is larger than {_MAX_IMAGE_SIZE} pixels; GenRL uses 64.")
        self.action_repeat = _check_positive_int("action_repeat", action_repeat, "GenRL uses 2.")
        self.episode_frames = _check_positive_int("episode_frames", episode_frames, "dm_control episodes are 1000 frames.")
        if self.episode_frames < self.action_repeat:
            raise ValueError(f"episode_frames={episode_frames} is shorter than one agent step "
                             f"(action_repeat={action_repeat} frames).")
        if render_quality not in RENDER_QUALITIES:
            raise ValueError(f"render_quality must be one of {RENDER_QUALITIES}, got {render_quality!r}.")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}.")
        self.render_size = self.image_size if render_size is None else _check_positive_int(
            "render_size", render_size, "it is the side in pixels of the frames render() returns.")
        if self.render_size > _MAX_IMAGE_SIZE:
            raise ValueError(f"render_size={render_size} is larger than {_MAX_IMAGE_SIZE} pixels.")
        self.render_mode = render_mode
        self.render_quality = render_quality
        self.proprio = bool(proprio)
        self.pixels = bool(pixels)
        self.max_agent_steps = self.episode_frames // self.action_repeat

        # dm_control's own time limit is disabled (inf): episodes end after ``episode_frames`` frames, counted here.
        self._dm_env = domains.load(domain, task, random=seed, environment_kwargs={"time_limit": float("inf")})
        # Shimmy bridges dm_env -> Gymnasium (step/reset conversion, seeding of the dm_control task RandomState).

        self._gym_env = shimmy.DmControlCompatibilityV0(self._dm_env)
        physics = self._dm_env.physics
        ncam = int(physics.model.ncam)
        self.camera_id = self.task_spec.camera_id if camera_id is None else int(camera_id)
        if not 0 <= self.camera_id < ncam:
            names = [physics.model.id2name(i, "camera") for i in range(ncam)]
            self._gym_env.close()  # free the physics we just built
            raise ValueError(f"camera_id={camera_id} is not a camera of the {domain} model; valid ids 0..{ncam - 1} "
                             f"({', '.join(f'{i}={n}' for i, n in enumerate(names))}).")
        self._configure_rendering(physics)

        spec = self._dm_env.action_spec()
        self._action_low = np.asarray(spec.minimum, dtype=np.float64)
        self._action_high = np.asarray(spec.maximum, dtype=np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, shape=spec.shape, dtype=np.float32)
        obs_spaces: dict[str, spaces.Space[Any]] = {}
        if self.pixels:
            obs_spaces["image"] = spaces.Box(0, 255, (self.image_size, self.image_size, 3), dtype=np.uint8)
        if self.proprio:
            dim = sum(int(np.prod(s.shape)) for s in self._dm_env.observation_spec().values())
            obs_spaces["proprio"] = spaces.Box(-np.inf, np.inf, (dim,), dtype=np.float32)
        self.observation_space = spaces.Dict(obs_spaces)  # type: ignore[assignment]  # a Dict space of arrays
        self.metadata = {**self.metadata, "render_fps": 1.0 / (self._dm_env.control_timestep() * self.action_repeat)}

        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
            self.action_space.seed(seed)
        self._cameras: dict[int, Any] = {}
        self._frame: np.ndarray | None = None
        self._agent_steps = 0
        self._needs_reset = True
        self._closed = False

    # ----------------------------------------------------------------------------------------------------------------
    @property
    def render_settings(self) -> dict[str, Any]:
        """What the frames were rendered with: ``image_size`` (px), ``camera_id``, ``render_quality``."""
        return {"image_size": self.image_size, "camera_id": self.camera_id, "render_quality": self.render_quality}

    @property
    def physics(self) -> Any:
        """The dm_control ``Physics`` (tests and tools set joint positions through it)."""
        return self._dm_env.physics

    @property
    def dm_env(self) -> Any:
        """The wrapped dm_control ``control.Environment``."""
        return self._dm_env

    @property
    def task(self) -> Any:
        """The dm_control ``base.Task`` (``task.get_reward(physics)`` is the true per-frame reward)."""
        return self._dm_env.task

    # ----------------------------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode. ``seed`` reseeds the dm_control task's initial-state randomisation (reproducible).

        :return: ``(obs, info)``; ``obs["image"]`` uint8 [S, S, 3] (+ ``obs["proprio"]`` float32 [P]).
        """
        self._check_open()
        if seed is not None and not 0 <= int(seed) < 2**32:
            raise ValueError(f"seed must be in [0, 2**32) (dm_control uses numpy RandomState), got {seed}.")
        super().reset(seed=seed)
        dm_obs, info = self._gym_env.reset(seed=seed)
        self._agent_steps = 0
        self._needs_reset = False
        return self._observation(dm_obs), {}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply ``action`` (clipped to [-1, 1]) for ``action_repeat`` frames.

        :return: ``(obs, reward, terminated, truncated, info)``: ``reward`` is the sum of the task's per-frame rewards
            (each in [0, 1]), also in ``info["task_reward"]``; ``truncated`` after ``episode_frames`` frames.
        """
        self._check_open()
        if self._needs_reset:
            raise RuntimeError("PixelEnv.step() called before reset() or after the episode ended; call env.reset().")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action has shape {action.shape}, expected {self.action_space.shape}.")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action contains NaN or inf: {action}.")
        scaled = self._action_low + (np.clip(action, -1.0, 1.0) + 1.0) / 2.0 * (self._action_high - self._action_low)
        total = 0.0
        terminated = truncated = False
        dm_obs: Any = None
        for _ in range(self.action_repeat):
            dm_obs, reward, terminated, truncated, _ = self._gym_env.step(scaled)
            total += float(reward)
            if terminated or truncated:
                break
        self._agent_steps += 1
        truncated = bool(truncated) or (self._agent_steps >= self.max_agent_steps and not terminated)
        self._needs_reset = bool(terminated or truncated)
        return self._observation(dm_obs), total, bool(terminated), truncated, {"task_reward": total}

    def render(self) -> np.ndarray | None:
        """Current frame as uint8 [R, R, 3] (R = ``render_size``, default ``image_size``) if ``render_mode="rgb_array"``."""
        self._check_open()
        if self.render_mode is None:
            gymnasium.logger.warn("PixelEnv.render() called without a render_mode; pass render_mode='rgb_array'.")
            return None
        if self.pixels and self.render_size == self.image_size and self._frame is not None:
            return self._frame.copy()
        return self.render_frame(self.render_size)

    def render_frame(self, size: int | None = None) -> np.ndarray:
        """Render the current physics state now: uint8 [size, size, 3] (default ``image_size``), env's camera/quality.

        Sizes above the observation's are fine up to the offscreen buffer (``max(image_size, render_size)``, at least
        dm_control's 640x480 default).
        """
        self._check_open()
        size = self.image_size if size is None else _check_positive_int("size", size, "frame side in pixels.")
        camera = self._cameras.get(size)
        if camera is None:
            camera = self._cameras[size] = engine.Camera(self._dm_env.physics, height=size, width=size,
                                                         camera_id=self.camera_id)
        # Copy: dm_control returns a flipped view of the camera's reusable pixel buffer, which the next render overwrites.
        return camera.render(render_flag_overrides=self._flag_overrides).copy()

    def close(self) -> None:
        """Free the render scenes and the MuJoCo physics (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        for camera in self._cameras.values():
            camera._scene.free()  # dm_control's Physics.render frees its per-call scene the same way
        self._cameras.clear()
        self._gym_env.close()

    # ----------------------------------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("This PixelEnv is closed; make a new one with make_pixel_env().")

    def _configure_rendering(self, physics: Any) -> None:
        """Set the offscreen buffer (size, multisampling) before the first render creates the GL context.

        MuJoCo reads ``offwidth/offheight/offsamples`` when dm_control lazily creates the context (first access of
        ``physics.contexts``), so this must run before anything renders this physics.
        """
        vis = physics.model.vis
        side = max(self.image_size, self.render_size)
        vis.global_.offwidth = max(int(vis.global_.offwidth), side)
        vis.global_.offheight = max(int(vis.global_.offheight), side)
        if self.render_quality == "fast":
            vis.quality.offsamples = 0
        self._flag_overrides = dict(_FAST_FLAG_OVERRIDES) if self.render_quality == "fast" else {}

    def _observation(self, dm_obs: dict[str, Any]) -> dict[str, np.ndarray]:
        obs = {}
        if self.pixels:
            self._frame = obs["image"] = self.render_frame()
        if self.proprio:
            obs["proprio"] = np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in dm_obs.values()])
        return obs


#: ``make_pixel_env`` arguments a world model records in its ``render_settings`` (how its training frames were made).
RENDER_SETTING_KEYS = ("image_size", "camera_id", "render_quality", "action_repeat")


def render_env_kwargs(render_settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """``make_pixel_env`` keyword arguments that render frames as a world model's training data were rendered.

    :param render_settings: a model's ``render_settings`` (e.g. ``MFWM.render_settings``; None gives ``{}``).
    :return: the entries of :data:`RENDER_SETTING_KEYS` that are set (not None).
    """
    return {k: v for k, v in (render_settings or {}).items() if k in RENDER_SETTING_KEYS and v is not None}


def make_pixel_env(domain: str, task: str, *, image_size: int = 64, action_repeat: int = 2, proprio: bool = False,
                   render_quality: str = "fast", episode_frames: int = 1000, camera_id: int | None = None,
                   seed: int | None = None, render_mode: str | None = None, render_size: int | None = None,
                   pixels: bool = True) -> PixelEnv:
    """Build a pixel Gymnasium env for ``domain``/``task`` (see ``genrl_gym.envs.TASKS``).

    :param domain: ``"walker"``, ``"cheetah"``, ``"quadruped"`` or ``"stickman"``.
    :param task: a task of that domain, e.g. ``"run"``.
    :param image_size: side S of the square observation frames (pixels); GenRL uses 64.
    :param action_repeat: frames (dm_control control steps) per agent step; rewards are summed over them.
    :param proprio: also return ``obs["proprio"]``, the flattened dm_control observations (float32 [P]).
    :param render_quality: ``"fast"`` (no multisampling, shadows or reflections) or ``"default"`` (dm_control's).
    :param episode_frames: frames per episode; the episode is ``episode_frames // action_repeat`` agent steps, then
        ``truncated=True``.
    :param camera_id: dm_control camera (default: the task table's, quadruped 2, others 0).
    :param seed: seeds the task's initial-state randomisation and the action space; ``reset(seed=...)`` reseeds.
    :param render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns the current frame).
    :param render_size: side of the frames ``render()`` returns (pixels; default ``image_size``).
    :param pixels: ``False`` drops ``obs["image"]`` and renders nothing per step (state-based training, e.g. SB3 experts on
        ``obs["proprio"]``; needs ``proprio=True``). Physics, action repeat and rewards are unchanged.

    :return: A :class:`PixelEnv` with ``observation_space = Dict(image=Box(0, 255, (S, S, 3), uint8)[, proprio=Box(P)])`` and
        ``action_space = Box(-1, 1, (A,), float32)``.

    :raises ValueError: unknown domain/task (lists the valid ones), bad sizes, repeat, quality, camera or render mode.
    """
    return PixelEnv(domain, task, image_size=image_size, action_repeat=action_repeat, proprio=proprio,
                    render_quality=render_quality, episode_frames=episode_frames, camera_id=camera_id, seed=seed,
                    render_mode=render_mode, render_size=render_size, pixels=pixels)
