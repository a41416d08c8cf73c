"""Gymnasium ids ``GenRL/<Domain>-v0``: pixel envs whose reward is GenRL's trajectory-matching score.

Importing this module (``import genrl_gym`` does) registers::

    GenRL/Walker-v0  GenRL/Cheetah-v0  GenRL/Quadruped-v0  GenRL/Stickman-v0  GenRL/Kitchen-v0

Gymnasium 1.x has no plugin hook, so either ``import genrl_gym`` first or name the module in the id:
``gym.make("genrl_gym:GenRL/Walker-v0", ...)``. All keyword arguments are JSON-able (see :func:`make_genrl_env`), so
``env.spec`` records the prompt, the model and the task and can be serialised.

``gym.make`` builds one :class:`~genrl_gym.wrappers.GenRLReward` env; ``gym.make_vec(id, num_envs=N)`` uses the
registered ``vector_entry_point`` (:func:`make_genrl_vector_env`): a synchronous vector env of N pixel envs whose
rewards come from one batched world-model call per step (:class:`~genrl_gym.wrappers.GenRLVectorReward`).

Episode length: the dm_control ids are registered with ``max_episode_steps = 1000 frames / action_repeat 2 = 500``, the
length of GenRL's episodes. The env itself truncates after ``episode_frames // action_repeat`` steps, so shorter
episodes need nothing more; for longer ones also pass ``max_episode_steps=`` to ``gym.make`` (else its ``TimeLimit``
stops them at 500). Kitchen episodes are 140 steps and end at the first success.

The imports of the env stack, the world model and the wrappers sit inside the functions on purpose (the one module
where they do): ``import genrl_gym`` runs this module, and it must stay cheap and render-free; they load when an env
is made.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from genrl_gym.utils import PromptError
from genrl_gym.utils import env_id as _env_id

if TYPE_CHECKING:
    from genrl_gym.reward import RewardSpec
    from genrl_gym.wrappers.gym_reward import GenRLReward, GenRLVectorReward

__all__ = ["ENV_IDS", "DEFAULT_EPISODE_FRAMES", "DEFAULT_ACTION_REPEAT", "make_genrl_env", "make_genrl_vector_env",
           "register_envs", "default_task", "default_prompt"]

logger = logging.getLogger(__name__)

DEFAULT_EPISODE_FRAMES = 1000
DEFAULT_ACTION_REPEAT = 2
_DMC_DOMAINS = ("walker", "cheetah", "quadruped", "stickman")
_KITCHEN_STEPS = 140  # genrl_gym.envs.kitchen.MAX_AGENT_STEPS (not imported here: registration must stay cheap)
_KITCHEN_DEFAULT_TASK = "microwave"


def _kitchen_available() -> bool:
    """True when the package ships the kitchen env module (its optional dependency is checked at make time)."""
    return os.path.isfile(os.path.join(os.path.dirname(__file__), "envs", "kitchen.py"))


def _env_ids() -> dict[str, str]:
    domains = _DMC_DOMAINS + (("kitchen",) if _kitchen_available() else ())
    return {_env_id(d): d for d in domains}


#: Registered id -> domain.
ENV_IDS: dict[str, str] = _env_ids()


def register_envs() -> tuple[str, ...]:
    """Register every ``GenRL/<Domain>-v0`` id (idempotent; cheap: nothing heavy is imported). Returns the ids."""
    for env_id, domain in ENV_IDS.items():
        if env_id in gym.registry:
            continue
        steps = _KITCHEN_STEPS if domain == "kitchen" else DEFAULT_EPISODE_FRAMES // DEFAULT_ACTION_REPEAT
        gym.register(env_id, entry_point="genrl_gym.registration:make_genrl_env",
                     vector_entry_point="genrl_gym.registration:make_genrl_vector_env",
                     max_episode_steps=steps, kwargs={"domain": domain})
    return tuple(ENV_IDS)


def default_task(domain: str) -> str:
    """The true reward reported by default: the domain's first task in :data:`genrl_gym.envs.TASKS` (walker -> stand,
    cheetah -> run, quadruped -> stand, stickman -> stand; kitchen -> microwave)."""
    if domain == "kitchen":
        return _KITCHEN_DEFAULT_TASK
    from genrl_gym.envs.tasks import tasks_of

    return tasks_of(domain)[0]


def default_prompt(domain: str, task: str, env_id: str | None = None) -> Any:
    """The shipped example clip of ``domain``/``task`` (``genrl_gym.prompts.example``); else a PromptError saying to pass
    one."""
    what = env_id or _env_id(domain)
    example: Callable[[str, str], os.PathLike[str]] | None
    try:
        from genrl_gym.prompts import example
    except ImportError:
        example = None
    if example is None:
        raise PromptError(f"{what} needs a prompt: pass prompt='<text>' (with a text-capable model) or "
                          f"prompt='<path to a .gif/.mp4 clip>' of the behaviour; no example clips ship with this install")
    try:
        return example(domain, task)
    except Exception as e:  # no clip shipped for this task: say what to pass instead
        raise PromptError(f"{what}: no example prompt clip for {domain}/{task} ({e}); pass prompt='<text>' or "
                          f"prompt='<path to a .gif/.mp4 clip>'") from e


def _json_prompt(prompt: Any) -> Any:
    """Accept the prompt forms the wrapper takes; PathLike -> str so the spec stays JSON-able (arrays, video or image,
    are passed on as they are: :func:`genrl_gym.prompts.target_from_prompt` tells them apart by shape)."""
    if isinstance(prompt, os.PathLike):
        return os.fspath(prompt)
    return prompt


def _base_env_factory(domain: str, task: str, *, image_size: int, action_repeat: int, episode_frames: int,
                      camera_id: int | None, render_quality: str, render_mode: str | None, proprio: bool,
                      seed: int | None) -> Callable[[], gym.Env[Any, Any]]:
    """A zero-argument builder of the inner pixel env (dm_control or kitchen)."""
    if domain == "kitchen":
        if action_repeat != DEFAULT_ACTION_REPEAT or episode_frames != DEFAULT_EPISODE_FRAMES or camera_id is not None \
                or proprio:
            raise ValueError("GenRL/Kitchen-v0 has a fixed protocol (action repeat 2, 140-step episodes, its own camera, "
                             "images only): drop action_repeat/episode_frames/camera_id/proprio")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")

        def make_kitchen() -> gym.Env[Any, Any]:
            from genrl_gym.envs.kitchen import make_kitchen_env

            return make_kitchen_env(task, image_size=image_size, seed=seed)  # type: ignore[arg-type]

        return make_kitchen

    def make_dmc() -> gym.Env[Any, Any]:
        from genrl_gym.envs import make_pixel_env

        return make_pixel_env(domain, task, image_size=image_size, action_repeat=action_repeat, proprio=proprio,
                              render_quality=render_quality, episode_frames=episode_frames, camera_id=camera_id,
                              seed=seed, render_mode=render_mode)

    return make_dmc


def _resolve(domain: str, spec: RewardSpec | None, overrides: Mapping[str, Any], model: Any, prompt: Any,
             task: str | None, camera_id: int | None,
             render_quality: str | None) -> tuple[RewardSpec, str, int | None, str, bool]:
    """Shared argument resolution of the single and vector entry points -> (reward spec with the loaded model and the
    prompt, task, camera_id, quality, whether the prompt is the default clip).

    The spec is ``spec`` with ``model``, ``prompt`` and ``overrides`` (:func:`genrl_gym.reward.reward_spec`); its model
    defaults to the domain's (``model=None``: the domain name, i.e. the shipped model).

    ``prompt=None`` means the task's shipped clip (:func:`default_prompt`); which clip is logged at WARNING level on this
    module's logger, so that a missing ``prompt=`` is never silent.
    """
    from genrl_gym.model_store import resolve_model
    from genrl_gym.reward import reward_spec

    spec = reward_spec(spec, model=model, prompt=prompt, **overrides)
    if domain not in ENV_IDS.values():
        import difflib

        close = difflib.get_close_matches(str(domain), list(ENV_IDS.values()), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown GenRL domain {domain!r}.{hint} Valid: {', '.join(ENV_IDS.values())}")
    task = default_task(domain) if task is None else task
    if domain != "kitchen":
        from genrl_gym.envs.tasks import get_task

        get_task(domain, task)  # unknown task -> ValueError listing valid ones, before loading anything heavy
    else:
        from genrl_gym.envs.kitchen import KITCHEN_TASKS

        if task not in KITCHEN_TASKS:
            raise ValueError(f"unknown kitchen task {task!r}; choose one of {sorted(KITCHEN_TASKS)}")
    mfwm = resolve_model(domain if spec.model is None else spec.model, domain=domain, map_location=str(spec.device))
    prompt = spec.prompt
    is_default = prompt is None
    if is_default:
        prompt = default_prompt(domain, task)
        logger.warning("%s: no prompt given, so the reward follows the shipped %s/%s clip %s (pass prompt= to "
                       "choose one; env.prompt records it)", _env_id(domain), domain, task, os.fspath(prompt))
    settings: Mapping[str, Any] = getattr(mfwm, "render_settings", None) or {}
    # Feed the model what it was trained on unless the caller says otherwise.
    if camera_id is None and domain != "kitchen" and settings.get("camera_id") is not None:
        camera_id = int(settings["camera_id"])
    if render_quality is None:
        render_quality = str(settings.get("render_quality", "fast"))
    elif settings.get("render_quality") not in (None, render_quality):
        logger.warning("rendering with render_quality=%r but the world model was trained on %r frames; its rewards may "
                       "be off", render_quality, settings["render_quality"])
    return reward_spec(spec, model=mfwm, prompt=_json_prompt(prompt)), task, camera_id, render_quality, is_default


def make_genrl_env(domain: str, *, prompt: str | os.PathLike[str] | np.ndarray | None = None,
                   model: str | os.PathLike[str] | Any = None, task: str | None = None, spec: RewardSpec | None = None,
                   render_mode: str | None = None, image_size: int = 64, action_repeat: int = DEFAULT_ACTION_REPEAT,
                   episode_frames: int = DEFAULT_EPISODE_FRAMES, camera_id: int | None = None,
                   render_quality: str | None = None, proprio: bool = False, seed: int | None = None,
                   **overrides: Any) -> GenRLReward:
    """Entry point of ``GenRL/<Domain>-v0``: a pixel env of ``domain`` wrapped in :class:`~genrl_gym.wrappers.GenRLReward`.

    :param domain: ``"walker"``, ``"cheetah"``, ``"quadruped"``, ``"stickman"`` or ``"kitchen"`` (set by the id).
    :param prompt: text; a video (file path ``.gif``/``.mp4``..., or uint8 ``[T, H, W, 3]``); or an image (``.png``/
        ``.jpg`` path, or uint8 ``[H, W, 3]``: the frame repeated over one 8-frame VLM window, target ``kind="image"``);
        default (None): the shipped example clip of ``task`` (:func:`default_prompt`); which clip is logged (WARNING,
        logger ``genrl_gym.registration``) and kept in ``env.prompt`` (its path), with ``env.prompt_is_default`` True.
    :param model: checkpoint path or model name (``genrl_gym.model_store``); default: the domain name.
    :param task: whose true reward goes to ``info["task_reward"]``; default :func:`default_task`.
    :param spec: the reward's options (:class:`~genrl_gym.reward.RewardSpec`; None: its defaults). ``prompt=`` and
        ``model=`` given here win over the spec's.
    :param render_mode: None or ``"rgb_array"``.
    :param image_size: frame side in pixels (the model needs 64).
    :param action_repeat: physics steps per agent step. :param episode_frames: frames per episode.
    :param camera_id: dm_control camera (default: the model's recorded camera, else the task's).
    :param render_quality: ``"fast"``/``"default"`` (default: what the model was trained on, else fast).
    :param proprio: also return ``obs["proprio"]``. :param seed: seeds the env (``reset(seed=)`` reseeds).
    :param overrides: :class:`~genrl_gym.reward.RewardSpec` fields: ``vlm`` (a ``load_vlm`` spec embedding the
        prompt; None = the model's own VLM), ``score_kind``, ``history``, ``horizon``, ``align`` (default the model's
        ``reward_align``), ``device`` (of the reward model), ``track_latent`` (also expose ``env.latent``; same
        rewards, more compute), ``num_threads``. JSON-able values keep ``env.spec`` serialisable.
    :return: the wrapped env: observation ``{"image": uint8 [S, S, 3]}``, reward = GenRL score (float),
        ``info["task_reward"]`` the true reward, ``info["genrl_score"]`` the score.
    """
    from genrl_gym.wrappers.gym_reward import GenRLReward

    spec, task, camera_id, render_quality, is_default = _resolve(domain, spec, overrides, model, prompt, task, camera_id,
                                                                 render_quality)
    env = _base_env_factory(domain, task, image_size=image_size, action_repeat=action_repeat, episode_frames=episode_frames,
                            camera_id=camera_id, render_quality=render_quality, render_mode=render_mode, proprio=proprio,
                            seed=seed)()
    return _wrap_or_close(GenRLReward, env, spec, domain, is_default)


def make_genrl_vector_env(num_envs: int = 1, *, domain: str, prompt: str | os.PathLike[str] | np.ndarray | None = None,
                          model: str | os.PathLike[str] | Any = None, task: str | None = None,
                          spec: RewardSpec | None = None, render_mode: str | None = None, image_size: int = 64,
                          action_repeat: int = DEFAULT_ACTION_REPEAT, episode_frames: int = DEFAULT_EPISODE_FRAMES,
                          camera_id: int | None = None, render_quality: str | None = None, proprio: bool = False,
                          seed: int | None = None, max_episode_steps: int | None = None,
                          autoreset_mode: str | gym.vector.AutoresetMode = gym.vector.AutoresetMode.NEXT_STEP,
                          **overrides: Any) -> GenRLVectorReward:
    """Vector entry point of ``GenRL/<Domain>-v0`` (``gym.make_vec(id, num_envs=N)``).

    A :class:`gymnasium.vector.SyncVectorEnv` of ``num_envs`` pixel envs (sub-env ``i`` seeded ``seed + i``) wrapped in
    :class:`~genrl_gym.wrappers.GenRLVectorReward`, which filters all N frames through the world model in one batched call
    per step. Arguments as :func:`make_genrl_env`, plus ``max_episode_steps`` (a ``TimeLimit`` on each sub-env when it is
    shorter than the env's own episode; ``gym.make_vec`` passes the registered value) and ``autoreset_mode``.
    :return: vector env with ``rewards float64 [N]`` (GenRL scores), ``infos["task_reward"]``, ``infos["genrl_score"]``.
    """
    from genrl_gym.wrappers.gym_reward import GenRLVectorReward

    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    spec, task, camera_id, render_quality, is_default = _resolve(domain, spec, overrides, model, prompt, task, camera_id,
                                                                 render_quality)
    natural = _KITCHEN_STEPS if domain == "kitchen" else episode_frames // max(int(action_repeat), 1)

    def factory(i: int) -> Callable[[], gym.Env[Any, Any]]:
        build = _base_env_factory(domain, task, image_size=image_size, action_repeat=action_repeat,
                                  episode_frames=episode_frames, camera_id=camera_id, render_quality=render_quality,
                                  render_mode=render_mode, proprio=proprio, seed=None if seed is None else seed + i)

        def thunk() -> gym.Env[Any, Any]:
            env = build()
            if max_episode_steps is not None and 0 < max_episode_steps < natural:
                env = gym.wrappers.TimeLimit(env, max_episode_steps)
            return env

        return thunk

    venv = gym.vector.SyncVectorEnv([factory(i) for i in range(num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode(autoreset_mode))
    return _wrap_or_close(GenRLVectorReward, venv, spec, domain, is_default)


def _wrap_or_close(wrapper: Any, env: Any, spec: RewardSpec, domain: str, is_default: bool) -> Any:
    """``wrapper(env, spec=spec, domain=domain)`` with ``prompt_is_default`` set; the env is closed if wrapping fails
    (a bad prompt or model must not leak a renderer)."""
    try:
        wrapped = wrapper(env, spec=spec, domain=domain)
    except BaseException:
        env.close()
        raise
    wrapped.prompt_is_default = is_default
    return wrapped


register_envs()
