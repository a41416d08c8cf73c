"""GenRL's Franka kitchen tasks (microwave, light, burner, slide) on gymnasium-robotics' ``FrankaKitchen-v1``.

GenRL (reference code mazpie/genrl) uses the relay-policy-learning ``adept_envs`` kitchen (mujoco_py). gymnasium-robotics
ships a port of the same scene to the official ``mujoco`` bindings, with the same 9-DoF joint-velocity actions in
[-1, 1] (x2 internally), frame_skip 40, object-joint goals and default free camera (distance 2.2, look-at
(-0.2, 0.5, 2.0), azimuth 70, elevation -35). On top of it this module adds GenRL's protocol:

* action repeat 2 and a limit of 140 agent steps (280 simulator steps);
* observations ``{"image": uint8 [H, W, 3]}`` rendered from that camera;
* sparse success as the reward (``info["task_reward"]``): 1.0 once the task's object joints are within the task's
  threshold of the goal (microwave 0.25, light switch 0.5, bottom burner 0.5, slide cabinet 0.2), and the episode
  terminates at the first success (so an episode's return is 0 or 1). ``info["dense_reward"]`` is GenRL's training
  reward, minus the distance to the goal.

Requires the optional ``gymnasium-robotics`` package (1.4.x). gymnasium-robotics <= 1.4.2 fails on mujoco >= 3.12
(``AssertionError`` in ``gymnasium_robotics.utils.mujoco_utils.get_joint_qpos``): mujoco 3.12 bundles pybind11 3,
whose enums compare *unequal* to NumPy integers when the enum is the left operand, and the helper's
``joint_type in (mjJNT_HINGE, mjJNT_SLIDE)`` is exactly that comparison (tuple membership tests ``element ==
needle``). :func:`_patch_joint_helpers` replaces the four joint helpers with versions that compare plain ints when
the installed mujoco has that behaviour (upstream fix: Farama-Foundation/Gymnasium-Robotics PR #330).

Frames are rendered as GenRL does, with a dm_control ``MovableCamera`` on a dm_control ``Physics`` that shares the
kitchen's ``MjModel`` (its own ``MjData``, synced before each frame). Rendering through dm_control rather than
gymnasium's ``MujocoRenderer`` or ``mujoco.Renderer`` keeps every GL context in the process under dm_control's
bookkeeping: gymnasium's renderer makes its context current only when created, and dm_control caches which of its
contexts is current per thread, so mixing either with dm_control envs in one process gave garbage frames (measured
on Mesa EGL).
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import mujoco
import numpy as np
from dm_control import mujoco as dm_mujoco
from dm_control.mujoco import wrapper
from gymnasium import spaces

from genrl_gym import _compat  # noqa: F401  (sets MUJOCO_GL=egl before mujoco is imported)

KitchenTask = Literal["microwave", "light", "burner", "slide"]

# GenRL task name -> (gymnasium-robotics task name, qpos indices of the object joints, goal, success threshold).
KITCHEN_TASKS: dict[str, tuple[str, tuple[int, ...], tuple[float, ...], float]] = {
    "microwave": ("microwave", (22,), (-0.75,), 0.25),
    "light": ("light switch", (17, 18), (-0.69, -0.05), 0.5),
    "burner": ("bottom burner", (11, 12), (-0.88, -0.01), 0.5),
    "slide": ("slide cabinet", (19,), (0.37,), 0.2),
}
RENDER_QUALITIES = ("default", "fast")  # as genrl_gym.envs.pixel_env; "fast": no multisampling, shadows, reflections
ACTION_REPEAT = 2
MAX_AGENT_STEPS = 140  # 280 simulator steps / action repeat 2
CAMERA_CONFIG = {"distance": 2.2, "azimuth": 70.0, "elevation": -35.0, "lookat": np.array([-0.2, 0.5, 2.0])}

_PATCHED = False


def _enum_compares_with_numpy() -> bool:
    return bool(mujoco.mjtJoint.mjJNT_HINGE == np.int32(int(mujoco.mjtJoint.mjJNT_HINGE)))


def _patch_joint_helpers() -> None:
    """Make gymnasium-robotics' joint qpos/qvel helpers work on mujoco >= 3.12 (see module docstring). Idempotent."""
    global _PATCHED
    if _PATCHED or _enum_compares_with_numpy():
        _PATCHED = True
        return
    from gymnasium_robotics.utils import mujoco_utils

    widths = {  # joint type -> (qpos width, qvel width)
        int(mujoco.mjtJoint.mjJNT_FREE): (7, 6),
        int(mujoco.mjtJoint.mjJNT_BALL): (4, 3),
        int(mujoco.mjtJoint.mjJNT_SLIDE): (1, 1),
        int(mujoco.mjtJoint.mjJNT_HINGE): (1, 1),
    }

    def _address(model: Any, name: str, velocity: bool) -> slice:
        joint_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if joint_id == -1:
            raise ValueError(f"Joint with name '{name}' is not part of the model!")
        width = widths[int(model.jnt_type[joint_id])][1 if velocity else 0]
        start = int(model.jnt_dofadr[joint_id] if velocity else model.jnt_qposadr[joint_id])
        return slice(start, start + width)

    def get_joint_qpos(model: Any, data: Any, name: str) -> np.ndarray:
        return data.qpos[_address(model, name, velocity=False)].copy()

    def get_joint_qvel(model: Any, data: Any, name: str) -> np.ndarray:
        return data.qvel[_address(model, name, velocity=True)].copy()

    def set_joint_qpos(model: Any, data: Any, name: str, value: Any) -> None:
        index = _address(model, name, velocity=False)
        data.qpos[index] = np.asarray(value).reshape(-1) if index.stop - index.start > 1 else value

    def set_joint_qvel(model: Any, data: Any, name: str, value: Any) -> None:
        index = _address(model, name, velocity=True)
        data.qvel[index] = np.asarray(value).reshape(-1) if index.stop - index.start > 1 else value

    # robot_get_obs (used by FrankaKitchen's robot) looks these up in the module's globals at call time.
    mujoco_utils.get_joint_qpos = get_joint_qpos
    mujoco_utils.get_joint_qvel = get_joint_qvel
    mujoco_utils.set_joint_qpos = set_joint_qpos
    mujoco_utils.set_joint_qvel = set_joint_qvel
    _PATCHED = True


class KitchenEnv(gym.Env):
    """One GenRL kitchen task with pixel observations, action repeat 2, 140-step limit and sparse success reward."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 6}

    def __init__(
        self,
        task: KitchenTask = "microwave",
        image_size: int = 64,
        terminate_on_success: bool = True,
        seed: int | None = None,
        render_quality: str = "fast",
    ):
        if task not in KITCHEN_TASKS:
            raise ValueError(f"unknown kitchen task {task!r}; choose one of {sorted(KITCHEN_TASKS)}")
        if render_quality not in RENDER_QUALITIES:
            raise ValueError(f"render_quality must be one of {RENDER_QUALITIES}, got {render_quality!r}")
        try:
            from gymnasium_robotics.envs.franka_kitchen import KitchenEnv as _RoboticsKitchen
        except ImportError as exc:  # pragma: no cover - depends on the optional dependency
            raise ImportError(
                "the kitchen domain needs gymnasium-robotics: pip install 'gymnasium-robotics>=1.4,<1.5'"
            ) from exc
        _patch_joint_helpers()
        self.task = task
        self.render_mode = "rgb_array"
        robotics_task, indices, goal, threshold = KITCHEN_TASKS[task]
        self._indices = np.asarray(indices)
        self._goal = np.asarray(goal, dtype=np.float64)
        self._threshold = threshold
        self._terminate_on_success = terminate_on_success
        self._env = _RoboticsKitchen(
            tasks_to_complete=[robotics_task],
            terminate_on_tasks_completed=False,
            remove_task_when_completed=False,
        )
        self._image_size = image_size
        self.render_quality = render_quality
        self._physics: Any = None  # dm_control Physics sharing the kitchen's MjModel, created on the first render
        self._camera: Any = None
        self.observation_space = spaces.Dict({"image": spaces.Box(0, 255, (image_size, image_size, 3), dtype=np.uint8)})
        self.action_space = spaces.Box(-1.0, 1.0, (9,), dtype=np.float32)
        self._steps = 0
        self._seed = seed  # used by the first reset() that passes no seed
        if seed is not None:
            self.action_space.seed(seed)

    def _distance(self) -> float:
        return float(np.linalg.norm(self._env.data.qpos[self._indices] - self._goal))

    def _render(self) -> np.ndarray:
        model, data = self._env.model, self._env.data
        if self._physics is None:
            if self.render_quality == "fast":
                model.vis.quality.offsamples = 0  # read when dm_control creates the GL context
            self._physics = dm_mujoco.Physics.from_model(wrapper.MjModel(model))
            self._camera = dm_mujoco.MovableCamera(self._physics, self._image_size, self._image_size)
            self._camera.set_pose(
                CAMERA_CONFIG["lookat"], CAMERA_CONFIG["distance"], CAMERA_CONFIG["azimuth"], CAMERA_CONFIG["elevation"]
            )
        physics = self._physics
        physics.data.qpos[:] = data.qpos
        physics.data.qvel[:] = data.qvel
        physics.data.mocap_pos[:] = data.mocap_pos
        physics.data.mocap_quat[:] = data.mocap_quat
        physics.forward()
        overrides = {"shadow": False, "reflection": False} if self.render_quality == "fast" else None
        return np.ascontiguousarray(self._camera.render(render_flag_overrides=overrides), dtype=np.uint8).copy()

    @property
    def render_settings(self) -> dict[str, Any]:
        """What the frames were rendered with (as ``PixelEnv.render_settings``)."""
        return {"image_size": self._image_size, "camera_id": None, "render_quality": self.render_quality}

    def _observation(self) -> dict[str, np.ndarray]:
        return {"image": self._render()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None and self._seed is not None:
            seed, self._seed = self._seed, None
        super().reset(seed=seed)
        self._env.reset(seed=seed)
        self._steps = 0
        distance = self._distance()
        return self._observation(), {"success": distance < self._threshold, "distance": distance}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        success = False
        for _ in range(ACTION_REPEAT):
            self._env.step(action)
            success = success or self._distance() < self._threshold
        self._steps += 1
        distance = self._distance()
        task_reward = 1.0 if success else 0.0
        terminated = success and self._terminate_on_success
        truncated = self._steps >= MAX_AGENT_STEPS and not terminated
        info = {"task_reward": task_reward, "success": success, "distance": distance, "dense_reward": -distance}
        return self._observation(), task_reward, terminated, truncated, info

    def render(self) -> np.ndarray:
        return self._render()

    def close(self) -> None:
        if self._physics is not None:
            self._physics.free()
            self._physics = self._camera = None
        self._env.close()


def make_kitchen_env(
    task: KitchenTask, image_size: int = 64, seed: int | None = None, render_quality: str = "default"
) -> gym.Env:
    """Build a GenRL kitchen task (``"microwave"``, ``"light"``, ``"burner"`` or ``"slide"``) as a Gymnasium env.

    Observations are ``{"image": uint8 [image_size, image_size, 3]}``, actions ``Box(-1, 1, (9,))`` joint
    velocities, ``info["task_reward"]`` GenRL's sparse success (also the step reward). Episodes last at most 140
    agent steps (action repeat 2) and end at the first success. ``render_quality="fast"`` drops multisampling,
    shadows and reflections (far cheaper on a CPU/Mesa renderer, benchmarks/results/render.md; GenRL's frames have
    shadows).
    """
    return KitchenEnv(task, image_size=image_size, seed=seed, render_quality=render_quality)
