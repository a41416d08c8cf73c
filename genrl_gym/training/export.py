"""Turn a ``genrl pipeline`` run folder into a shipped model (``genrl export``).

``export_model(run_dir, domain)`` writes, into ``genrl_gym/pretrained/<domain>/`` by default (where
:func:`genrl_gym.model_store.resolve_model` finds ``model="<domain>"`` and :func:`genrl_gym.prompts.example` finds the
clips)::

    model.pt              the run's MFWM (``<run>/mfwm/mfwm.pt``) re-saved with ``MFWM.save(half=True)``: fp16 weights,
                          JSON config, VLM identity, domain, render settings, and metadata extended with the data recipe
                          (``<run>/recipe.json``), the pipeline configuration, the training summary and the clip sources
    prompts/<task>.gif    the in-domain prompt clips (``<run>/clips/<task>.gif``)
    prompts/clips.json    where each clip comes from: held-out episode, start row, frames, mean true reward per step
    model.json            a human-readable summary (domain, preset, updates, frames, VLM + language note, render settings,
                          recipe, SHA-256 and size of model.pt)

Every file is written atomically and nothing carries a time stamp, so exporting the same run twice gives byte-identical
files (idempotent). A model larger than ``max_mb`` (25 MB, the per-domain budget of shipped models) is refused before it
replaces anything.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from genrl_gym.model_store import PRETRAINED_DIR
from genrl_gym.models import MFWM
from genrl_gym.reward import ALIGNS
from genrl_gym.utils import CheckpointError, atomic_write, file_sha256
from genrl_gym.vlm.grounding import GROUNDING_FILE

__all__ = ["export_model", "DEFAULT_MAX_MB", "file_sha256", "read_run", "publish", "RunFiles"]

log = logging.getLogger(__name__)

#: Size budget of one shipped domain model (issue: "at most about 25 MB per domain").
DEFAULT_MAX_MB = 25.0


class RunFiles(dict):
    """Paths and parsed JSON of a pipeline run folder (see :func:`read_run`); a plain dict with attribute docs.

    Keys: ``run`` (Path), ``model`` (``mfwm/mfwm.pt``), ``tb`` (``mfwm/tb`` or None), ``clips_dir`` (``clips`` or None),
    ``clips`` (parsed ``clips/clips.json`` or None), ``heldout`` (``heldout`` or None), ``recipe`` (parsed
    ``recipe.json`` or None), ``pipeline`` (parsed ``pipeline.json`` or None), ``train_config`` (parsed
    ``mfwm/config.json`` or None).
    """


def read_json(path: Path) -> Any:
    """Parse a JSON file, naming the file in the error when it is corrupt."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable or corrupt JSON ({type(e).__name__}: {e}); re-run the pipeline stage "
                              "that writes it (`genrl pipeline --out <run>` resumes)") from e


def read_run(run_dir: str | os.PathLike[str], *, need_clips: bool = False) -> RunFiles:
    """Locate the pieces of a ``genrl pipeline`` run folder.

    :param run_dir: the folder passed to ``genrl pipeline --out``.
    :param need_clips: also require ``clips/clips.json`` and every clip it lists.
    :return: :class:`RunFiles` (optional pieces are None when absent).
    :raises FileNotFoundError: no such folder, or no ``mfwm/mfwm.pt`` (the message says which stage to run).
    :raises CheckpointError: a corrupt JSON file of the run.
    """
    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist; pass the --out folder of `genrl pipeline`")
    model = run / "mfwm" / "mfwm.pt"
    if not model.is_file():
        raise FileNotFoundError(f"{run} holds no trained world model ({model} is missing): the pipeline's 'train' stage has "
                                f"not finished; run `genrl pipeline --out {run} ...` again to resume it")
    files = RunFiles(run=run, model=model, tb=None, clips_dir=None, clips=None, heldout=None, recipe=None, pipeline=None,
                     train_config=None)
    if (run / "mfwm" / "tb").is_dir():
        files["tb"] = run / "mfwm" / "tb"
    if (run / "heldout" / "store.json").is_file():
        files["heldout"] = run / "heldout"
    for key, name in (("recipe", "recipe.json"), ("pipeline", "pipeline.json"), ("train_config", "mfwm/config.json")):
        if (run / name).is_file():
            files[key] = read_json(run / name)
    clips_json = run / "clips" / "clips.json"
    if clips_json.is_file():
        files["clips_dir"], files["clips"] = run / "clips", read_json(clips_json)
    if need_clips:
        if files["clips"] is None:
            raise FileNotFoundError(f"{run} has no prompt clips ({clips_json} is missing): run the pipeline's last stage, "
                                    f"`genrl pipeline --out {run} --until clips`")
        if not isinstance(files["clips"], dict) or not files["clips"]:
            raise CheckpointError(f"{clips_json}: expected a non-empty {{task: clip info}} object")
        for task in files["clips"]:
            if not (run / "clips" / f"{task}.gif").is_file():
                raise FileNotFoundError(f"{clips_json} lists task {task!r} but {run / 'clips' / (task + '.gif')} is missing; "
                                        f"delete clips.json and run `genrl pipeline --out {run} --until clips` again")
    return files


def publish(*paths: Path) -> None:
    """Make shipped files world-readable (0644): atomic writes create them owner-only, and package data installed from
    a wheel keeps the mode it was built with."""
    for path in paths:
        os.chmod(path, 0o644)


def _training_updates(files: RunFiles) -> int | None:
    """World-model updates actually done: the trainer checkpoint's step, else the requested steps of mfwm/config.json."""
    ckpt = files["run"] / "mfwm" / "checkpoint.pt"
    if ckpt.is_file():
        try:
            return int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["step"])
        except Exception as e:  # a damaged training checkpoint must not block shipping the finished model
            log.warning("cannot read the step of %s (%s); using mfwm/config.json", ckpt, e)
    cfg = files["train_config"] or {}
    return int(cfg["steps"]) if isinstance(cfg.get("steps"), int) else None


def vlm_summary(vlm: dict[str, Any] | None, grounded: Sequence[str] | None = None) -> dict[str, Any]:
    """VLM identity plus whether and how text prompts work, with the note users see (``model.json``, ``REPORT.md``).

    :param vlm: the model's VLM identity dict.
    :param grounded: the behaviours of the text grounding shipped beside a video-only model (``grounding.npz``), or None
        when it has none.
    """
    if not vlm:
        return {"identity": None, "has_language": False, "note": "this model records no VLM identity"}
    has_language = vlm.get("backend") != "video-only"
    open_vocabulary = ("Open vocabulary needs a real VLM: `genrl pipeline --domain <domain> --vlm "
                       "open_clip:ViT-B-32:<weights file>` (real weights needed)")
    if has_language:
        note = "text prompts work (the VLM has language weights)"
    elif grounded:
        note = (f"the VLM has no language; text prompts of this model's behaviours ({', '.join(grounded)}) and their "
                f"paraphrases go through its text grounding ({GROUNDING_FILE}, see text_grounding and "
                f"docs/text-prompts.md), other text is refused. {open_vocabulary}")
    else:
        note = ("video prompts only: the offline default VLM has no language and this model has no text grounding, so "
                "text prompts are refused (fit one with `genrl ground --model <model>`). " + open_vocabulary)
    return {"identity": dict(vlm), "has_language": has_language, "note": note}


def vlm_line(summary: dict[str, Any]) -> str:
    """The VLM line of ``REPORT.md`` for a :func:`vlm_summary`: ``- VLM: `<backend>:<model>` (weights ..., D-d). <note>.``"""
    ident = summary["identity"] or {}
    return (f"- VLM: `{ident.get('backend')}:{ident.get('model')}` (weights `{ident.get('weights')}`, "
            f"{ident.get('embed_dim')}-d). {summary['note']}.")


def export_model(run_dir: str | os.PathLike[str], domain: str, dest: str | os.PathLike[str] | None = None, *,
                 half: bool = True, max_mb: float = DEFAULT_MAX_MB, align: str | None = None,
                 reward_align: str | None = None) -> Path:
    """Ship a pipeline run's world model and prompt clips into a model folder (idempotent; atomic writes).

    :param run_dir: ``genrl pipeline --out`` folder with ``mfwm/mfwm.pt``, ``clips/`` (clip GIFs + ``clips.json``) and
        ``recipe.json``.
    :param domain: the model's domain (checked against the checkpoint), e.g. ``"walker"``.
    :param dest: output folder (default ``genrl_gym/pretrained/<domain>``, what ``model="<domain>"`` resolves to).
    :param half: store fp16 weights (loaded back as fp32 by ``MFWM.load``); False keeps fp32.
    :param max_mb: refuse a ``model.pt`` larger than this many MB (10^6 bytes), before anything is replaced.
    :param align: the reward alignment the model was checked with (``metadata["align"]``, the default of its envs,
        agents and reports; :attr:`genrl_gym.models.MFWM.reward_align`); None keeps the checkpoint's.
    :param reward_align: deprecated old name of ``align`` (a DeprecationWarning; passing both is an error).
    :return: the path of ``dest/model.pt``.
    :raises FileNotFoundError: missing run folder, model, clips or recipe (the message says which stage to run).
    :raises CheckpointError: wrong domain, corrupt checkpoint or JSON, or a model over the size budget.
    """
    files = read_run(run_dir, need_clips=True)
    run: Path = files["run"]
    if files["recipe"] is None:
        raise FileNotFoundError(f"{run / 'recipe.json'} is missing: the data recipe is written by the pipeline's 'collect' "
                                f"stage and shipped in the model's metadata; run `genrl pipeline --out {run}` to resume")
    out = Path(dest).expanduser() if dest is not None else PRETRAINED_DIR / domain
    model = MFWM.load(files["model"], expect_domain=domain)
    cfg = model.config
    run_updates = updates = _training_updates(files)
    init = read_json(run / "mfwm_init.json") if (run / "mfwm_init.json").is_file() else None
    if init is not None and updates is not None and isinstance(init.get("updates"), int):
        updates += init["updates"]  # the model's total: the init model's updates, then this run's
    recipe = files["recipe"]
    clips: dict[str, Any] = {}
    for task, info in files["clips"].items():
        clips[task] = {**info, "file": f"prompts/{task}.gif", "heldout_store": "heldout"}
    # metadata travels inside model.pt: what it was trained on and where its prompt clips came from (no paths of this
    # machine, no times: the same run must export to the same bytes)
    if reward_align is not None:
        if align is not None:
            raise ValueError("pass align only (reward_align is its deprecated old name)")
        warnings.warn("export_model(reward_align=...) is deprecated; use align=...", DeprecationWarning, stacklevel=2)
        align = reward_align
    if align is not None and align not in ALIGNS:
        raise ValueError(f"align={align!r}; choose one of {', '.join(ALIGNS)}")
    meta = {k: v for k, v in model.metadata.items() if k not in ("store", "reward_align")}
    if align is not None or model.metadata.get("reward_align") is not None:  # one key: the old one is renamed
        meta["align"] = align if align is not None else model.reward_align
    meta.update(recipe=recipe, pipeline=files["pipeline"], preset=cfg.preset, updates=updates, prompts=clips,
                exported_from=run.name, weights_dtype="float16" if half else "float32")
    model.metadata = meta

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".model.pt.export-{os.getpid()}"
    try:
        model.save(tmp, half=half)
        size = tmp.stat().st_size
        if size > max_mb * 1e6:
            raise CheckpointError(f"the exported model is {size / 1e6:.1f} MB, over the {max_mb:g} MB budget of a shipped "
                                  f"domain model; use half=True or a smaller preset (this one: {cfg.preset!r})")
        check = MFWM.load(tmp, expect_domain=domain)  # what users will load: must round-trip before it is shipped
        if set(check.state_dict()) != set(model.state_dict()):
            raise CheckpointError(f"{tmp}: exported weights do not round-trip (state-dict keys differ)")
        os.replace(tmp, out / "model.pt")
    finally:
        tmp.unlink(missing_ok=True)
    target = out / "model.pt"

    prompts_dir = out / "prompts"
    prompts_dir.mkdir(exist_ok=True)
    for task in clips:
        data = (files["clips_dir"] / f"{task}.gif").read_bytes()
        with atomic_write(prompts_dir / f"{task}.gif", "wb") as f:
            f.write(data)
    with atomic_write(prompts_dir / "clips.json", "w") as f:  # task order of the pipeline (not sorted)
        json.dump(clips, f, indent=2)

    summary = {
        "domain": model.domain,
        "file": "model.pt",
        "sha256": file_sha256(target),
        "size_bytes": target.stat().st_size,
        "weights_dtype": "float16" if half else "float32",
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "preset": cfg.preset,
        "updates": updates,
        "frames": recipe.get("frames"),
        "episodes": recipe.get("episodes"),
        "vlm": vlm_summary(model._vlm),
        "render_settings": model.render_settings,
        "align": model.reward_align,
        "image_size": cfg.image_size,
        "action_dim": cfg.action_dim,
        "embed_dim": cfg.embed_dim,
        "recipe": recipe,
        "prompts": clips,
        "exported_from": run.name,
        "reproduce": _reproduce_command(files["pipeline"], domain),
    }
    if init is not None:  # continued from another model: which one (its sha256 and updates), and this run's share
        summary["init"] = {"sha256": init.get("sha256"), "updates": init.get("updates"),
                           "exported_from": init.get("exported_from"), "this_run_updates": run_updates}
    with atomic_write(out / "model.json", "w") as f:
        json.dump(summary, f, indent=2, default=str)
    publish(target, out / "model.json", prompts_dir / "clips.json", *(prompts_dir / f"{t}.gif" for t in clips))
    log.info("exported %s (%.1f MB) and %d prompt clips to %s", files["model"], summary["size_bytes"] / 1e6, len(clips), out)
    return target


def _reproduce_command(pipeline: dict[str, Any] | None, domain: str) -> str:
    """The ``genrl pipeline`` command line matching a run's pipeline.json (approximate when fields have no flag)."""
    if not pipeline:
        return f"genrl pipeline --domain {domain} --out runs/{domain}-pipeline"
    parts = [f"genrl pipeline --domain {pipeline.get('domain', domain)}", f"--preset {pipeline.get('preset')}",
             f"--vlm {pipeline.get('vlm')}", f"--steps {pipeline.get('mfwm_steps')}"]
    expert = pipeline.get("expert") or {}
    if expert.get("total_steps"):
        parts.append(f"--expert-steps {expert['total_steps']}")
    if pipeline.get("handover_episodes"):
        parts.append(f"--handover-episodes {pipeline['handover_episodes']} --handover-steps {pipeline['handover_steps']}")
    if pipeline.get("explore_noise"):
        parts.append("--explore-noise " + " ".join(f"{n:g}" for n in pipeline["explore_noise"])
                     + f" --explore-episodes {pipeline['explore_episodes']}")
    if pipeline.get("cycle_episodes"):
        parts.append(f"--cycle-episodes {pipeline['cycle_episodes']} --cycle-random-steps "
                     f"{pipeline['cycle_random_steps']} --cycle-expert-steps {pipeline['cycle_expert_steps']}")
    for key, flag in (("episodes_per_stage", "--episodes-per-stage"), ("random_episodes", "--random-episodes"),
                      ("heldout_episodes", "--heldout-episodes"), ("seed", "--seed"),
                      ("clip_reward_tolerance", "--clip-reward-tolerance")):
        if pipeline.get(key) is not None:
            parts.append(f"{flag} {pipeline[key]}")
    if pipeline.get("tasks"):
        parts.append("--tasks " + " ".join(pipeline["tasks"]))
    if pipeline.get("mfwm_init"):
        parts.append(f"--mfwm-init {pipeline['mfwm_init']}")
    for key, flag in (("warm_start", "--warm-start"), ("expert_algo", "--expert-algo"),
                      ("expert_task_steps", "--expert-task-steps")):  # {task: value} -> TASK=VALUE pairs
        if pipeline.get(key):
            parts.append(f"{flag} " + " ".join(f"{t}={v}" for t, v in pipeline[key].items()))
    parts.append(f"--out runs/{domain}-pipeline")
    return " ".join(parts)
