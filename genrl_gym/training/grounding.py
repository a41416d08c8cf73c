"""Fit a model's text grounding (:class:`genrl_gym.vlm.grounding.TextGrounding`) and write it beside the model.

Fitting data are the model's own task-labelled 8-frame windows, embedded by its VLM:

* for each task with a prompt clip, the connector target of the clip (GenRL's video path) decoded to frames by the
  model, rolled out with ``seeds`` connector seeds (:func:`model_task_windows`);
* optionally the episodes of a store whose ``info["task"]`` names the task (``genrl ground --store``).

Captions are the task table's prompt of each task plus the ``fitting`` phrasings of ``genrl_gym/vlm/captions.json``
(the ``heldout`` phrasings are never used here). The default map is kernel (Nadaraya-Watson) regression over the
captions (:class:`~genrl_gym.vlm.grounding.TextGrounding`), its temperature chosen by leave-one-caption-out; the
alternative ``method="ridge"`` is ridge regression ``min |X W - Y|^2 + ridge |W|^2`` over all
(caption of task k, window embedding of task k) pairs, which equals fitting each caption to the mean window embedding
of its task with weight = that task's window count; the rows of Y are unit-norm video embeddings. The fitted map
therefore has rank <= K (the number of behaviours): a phrase maps to a ridge-weighted combination of the behaviours'
mean window embeddings, and the grounding stores it factorised (``coef [384, K]``, ``task_embeddings [K, D]``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from genrl_gym.data.episodes import EpisodeStore
from genrl_gym.envs.tasks import TASKS, tasks_of
from genrl_gym.model_store import resolve_model, resolve_model_path
from genrl_gym.models.mfwm import identity_dict
from genrl_gym.prompts import clear_cache, decode_target, list_examples, target_from_prompt
from genrl_gym.training.export import vlm_line, vlm_summary
from genrl_gym.utils import atomic_write
from genrl_gym.vlm import load_vlm
from genrl_gym.vlm.base import DEFAULT_WINDOW
from genrl_gym.vlm.grounding import DEFAULT_THRESHOLD, GROUNDING_FILE, TextGrounding, captions
from genrl_gym.vlm.text_encoder import load_sentence_encoder

__all__ = ["DEFAULT_METHOD", "DEFAULT_RIDGE", "DEFAULT_SEEDS", "DEFAULT_TARGET_HORIZON", "TEMPERATURES",
           "anchor_captions", "fit_text_grounding", "ground_model", "model_task_windows", "record_in_model_json",
           "task_captions"]

logger = logging.getLogger(__name__)

#: Ridge penalty of the ridge map (sentence embeddings are unit-norm).
DEFAULT_RIDGE = 0.1
#: Default map: Nadaraya-Watson kernel regression over the fitting captions (see TextGrounding).
DEFAULT_METHOD: Final = "kernel"
#: Kernel temperatures tried by leave-one-caption-out.
TEMPERATURES = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2)
#: Connector seeds of the decoded target rollouts per task.
DEFAULT_SEEDS = 8
#: Steps of each decoded target rollout (49 frames -> 42 windows of 8).
DEFAULT_TARGET_HORIZON = 48
#: the caption sets of captions.json a grounding is fitted on by default (measured: docs/text-prompts.md)
DEFAULT_CAPTION_SETS: tuple[str, ...] = ("fitting", "fitting_extra")


def _caption_set(name: str) -> dict[str, list[str]]:
    """``captions.json[name]`` (``{behaviour: [text]}``); an unknown or non-fitting name is a clear error."""
    c = captions()
    if not name.startswith("fitting") or not isinstance(c.get(name), dict):
        valid = [k for k, v in c.items() if k.startswith("fitting") and isinstance(v, dict)]
        raise ValueError(f"caption set {name!r}: choose among the fitting sets of genrl_gym/vlm/captions.json {valid} "
                         "(the held-out sets only evaluate)")
    return c[name]


def task_captions(domain: str, tasks: Sequence[str], sets: Sequence[str] = DEFAULT_CAPTION_SETS) -> dict[str, list[str]]:
    """Fitting captions per task: the task table's prompt plus ``captions.json[set][task]`` of each of ``sets``
    (default ``("fitting",)``; when present)."""
    chosen = [_caption_set(name) for name in sets]
    out = {}
    for task in tasks:
        spec = TASKS.get(f"{domain}_{task}")
        texts = ([spec.prompt] if spec is not None else []) + [t for fitting in chosen for t in fitting.get(task, [])]
        if not texts:
            raise ValueError(f"no captions for {domain}/{task}: add phrasings to genrl_gym/vlm/captions.json['fitting']"
                             f"[{task!r}] or pass captions_by_task")
        out[task] = list(dict.fromkeys(texts))
    return out


def anchor_captions(domain: str, tasks: Sequence[str], sets: Sequence[str] = DEFAULT_CAPTION_SETS) -> list[str]:
    """Captions of behaviours the model has no data of: ``captions.json["unknown"]``, the task table's prompts of the
    domain's other tasks, and the fitting captions (of ``sets``) of the behaviour names in captions.json that ``tasks``
    lacks."""
    c = captions()
    out = list(c["unknown"])
    out += [s.prompt for s in TASKS.values() if s.domain == domain and s.task not in tasks]
    for name in sets:
        for behaviour, texts in _caption_set(name).items():
            if behaviour not in tasks:
                out += texts
    known = {t for texts in task_captions(domain, tasks, sets).values() for t in texts}
    return [t for t in dict.fromkeys(out) if t not in known]


def model_task_windows(model: Any, clips: Mapping[str, str | os.PathLike[str]], *, seeds: int = DEFAULT_SEEDS,
                       horizon: int = DEFAULT_TARGET_HORIZON) -> dict[str, np.ndarray]:
    """Per task, the model's decoded target rollouts of the task's clip cut into 8-frame windows.

    :param clips: ``{task: video prompt}`` (e.g. :func:`genrl_gym.prompts.list_examples`).
    :return: ``{task: uint8 [seeds * (horizon - 6), 8, 64, 64, 3]}``.
    """
    if horizon < DEFAULT_WINDOW - 1:
        raise ValueError(f"horizon={horizon}: a decoded target of {horizon + 1} frames holds no {DEFAULT_WINDOW}-frame "
                         f"window; use at least {DEFAULT_WINDOW - 1} steps")
    out = {}
    for task, clip in clips.items():
        windows = []
        for seed in range(seeds):
            target = target_from_prompt(model, clip, horizon=horizon, seed=seed, cache=False)
            frames = decode_target(model, target)
            idx = np.arange(len(frames) - DEFAULT_WINDOW + 1)[:, None] + np.arange(DEFAULT_WINDOW)
            windows.append(frames[idx])
        out[task] = np.concatenate(windows)
    return out


def fit_text_grounding(model: Any, windows_by_task: Mapping[str, np.ndarray],
                       captions_by_task: Mapping[str, Sequence[str]] | None = None, *, vlm: Any = None,
                       encoder: Any = None, method: str = DEFAULT_METHOD, ridge: float = DEFAULT_RIDGE,
                       temperature: float | None = None, threshold: float = DEFAULT_THRESHOLD,
                       anchors: Sequence[str] | None = None, info: Mapping[str, Any] | None = None) -> TextGrounding:
    """Fit the ridge map from the sentence space into ``model``'s VLM space.

    :param model: the MFWM (its domain, VLM identity).
    :param windows_by_task: ``{task: uint8 [N, 8, H, W, 3]}`` windows of each task (or float ``[N, D]`` ready VLM
        embeddings).
    :param captions_by_task: ``{task: [caption]}`` (default :func:`task_captions`).
    :param vlm: the model's VLM (default loaded from its identity).
    :param encoder: a sentence encoder with ``encode``, ``name`` and ``sha256`` (default the package's).
    :param method: ``"kernel"`` (Nadaraya-Watson over the captions) or ``"ridge"`` (linear map).
    :param ridge: ridge penalty (ridge method).
    :param temperature: kernel temperature (default: the one of :data:`TEMPERATURES` with the lowest
        leave-one-caption-out error, i.e. each fitting caption predicted from the others).
    :param threshold: grounding threshold (sentence cosine similarity).
    :param anchors: captions of behaviours the model lacks (default :func:`anchor_captions`).
    :param info: extra fitting facts recorded in the grounding (command, data sources).
    """
    tasks = list(windows_by_task)
    if not tasks:
        raise ValueError("no task windows to fit a text grounding on")
    captions_by_task = dict(captions_by_task or task_captions(model.domain, tasks))
    if encoder is None:
        encoder = load_sentence_encoder()
    if vlm is None:
        vlm = load_vlm(dict(model._vlm))
    if vlm is not None and getattr(vlm, "has_language", False):
        raise ValueError(f"the model's VLM {vlm.identity} has language weights: its text prompts go through its own text "
                         "tower and the aligner; a text grounding is only for video-only models")
    means, counts = {}, {}
    for task in tasks:
        w = windows_by_task[task]
        emb = np.asarray(vlm.embed_video(w) if np.asarray(w).dtype == np.uint8 else w, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[1] != model.config.embed_dim or not len(emb):
            raise ValueError(f"task {task!r}: windows must embed to [N, {model.config.embed_dim}], got {emb.shape}")
        means[task], counts[task] = emb.mean(0), len(emb)
    texts, labels, weights = [], [], []
    for k, task in enumerate(tasks):
        for text in captions_by_task[task]:
            texts.append(text)
            labels.append(k)
            weights.append(counts[task])
    x = np.asarray(encoder.encode(texts), dtype=np.float64)  # [Nc, E]
    onehot = np.eye(len(tasks))[labels]  # [Nc, K]
    sw = np.asarray(weights, dtype=np.float64)[:, None]
    # sum over pairs (caption of k, window of k) of |x W - y|^2 = sum over captions of n_k |x W - mean_k|^2 + const,
    # so W = (X' S X + ridge I)^-1 X' S L M with L the one-hot labels and M the task means: rank <= K, kept factorised
    gram = x.T @ (sw * x) + ridge * np.eye(x.shape[1])
    task_embeddings = np.stack([means[t] for t in tasks]).astype(np.float32)  # [K, D]
    if method == "ridge":
        coef = np.linalg.solve(gram, x.T @ (sw * onehot)).astype(np.float32)  # [E, K]
        loo: dict[float, float] = {}
    elif method == "kernel":
        coef = np.zeros((x.shape[1], 0), np.float32)
        loo = _kernel_loo(x, onehot, task_embeddings)
        if temperature is None:
            temperature = min(loo, key=lambda t: (loo[t], -float(t)))  # ties: the smoother
    else:
        raise ValueError(f"method must be 'kernel' or 'ridge', got {method!r}")
    anchor_texts = list(anchor_captions(model.domain, tasks) if anchors is None else anchors)
    anchor_emb = (np.asarray(encoder.encode(anchor_texts), dtype=np.float32) if anchor_texts
                  else np.zeros((0, x.shape[1]), np.float32))
    record = {**({"ridge": ridge} if method == "ridge" else {"loo_error": {str(k): v for k, v in loo.items()}}),
              "windows": int(sum(counts.values())),
              "windows_per_task": {t: int(n) for t, n in counts.items()},
              "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), **dict(info or {})}
    return TextGrounding(coef=coef, task_embeddings=task_embeddings, behaviours=tasks, caption_texts=texts,
                         caption_labels=np.asarray(labels),
                         caption_embeddings=x.astype(np.float32), anchor_texts=anchor_texts, anchor_embeddings=anchor_emb,
                         threshold=float(threshold), encoder=str(encoder.name), encoder_sha256=str(encoder.sha256),
                         vlm=identity_dict(model._vlm) or {}, domain=str(model.domain), method=method,
                         temperature=float(temperature or 0.0), info=record)


def _kernel_loo(x: np.ndarray, onehot: np.ndarray, task_embeddings: np.ndarray) -> dict[float, float]:
    """Leave-one-caption-out error of the kernel map per temperature: mean squared distance between each caption's
    unit-norm prediction from the other captions and its behaviour's unit-norm mean embedding."""
    if x.shape[0] < 2:  # nothing to leave out
        return {t: 0.0 for t in TEMPERATURES}
    m = task_embeddings / np.linalg.norm(task_embeddings, axis=1, keepdims=True)
    truth = onehot @ m
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    out = {}
    for t in TEMPERATURES:
        logits = sims / t
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        y = (w @ onehot) @ task_embeddings
        y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        out[t] = float(np.mean(np.sum((y - truth) ** 2, axis=1)))
    return out


def _store_windows(store: str | os.PathLike[str], tasks: Sequence[str] | None, per_episode: int = 64) -> dict[str, np.ndarray]:
    """Evenly spaced 8-frame windows of each task's episodes in an episode store (``info["task"]`` labels)."""
    st = EpisodeStore(store)
    info = st.episode_info()
    out: dict[str, list[np.ndarray]] = {}
    for path in st.paths():
        task = info.get(path.stem, {}).get("task")
        if task is None or (tasks is not None and task not in tasks):
            continue
        images = st.load(path, keys=("image",))["image"]
        starts = np.linspace(0, len(images) - DEFAULT_WINDOW, min(per_episode, len(images) - DEFAULT_WINDOW + 1))
        idx = np.rint(starts).astype(int)[:, None] + np.arange(DEFAULT_WINDOW)
        out.setdefault(task, []).append(images[idx])
    return {t: np.concatenate(v) for t, v in out.items()}


def record_in_model_json(path: str | os.PathLike[str], grounding: TextGrounding) -> bool:
    """Record a grounding in a model folder's ``model.json`` (``text_grounding``, and the ``vlm`` note), atomically,
    and put the same note into the folder's report (``report.json`` and the VLM line of ``REPORT.md``) when it has one.

    :return: False when there is no ``model.json`` (nothing written).
    """
    path = Path(path)
    if not path.is_file():
        return False
    data = json.loads(path.read_text())
    data["text_grounding"] = grounding.record()
    if isinstance(data.get("vlm"), dict):
        summary = vlm_summary(data["vlm"].get("identity"), grounding.behaviours)
        data["vlm"]["note"] = summary["note"]
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)
    if isinstance(data.get("vlm"), dict):
        _record_in_report(path.parent, summary)
    return True


def _record_in_report(folder: Path, summary: dict[str, Any]) -> None:
    """Put a :func:`vlm_summary`'s note into the ``genrl report`` of ``folder`` (report.json's ``model.vlm.note``,
    REPORT.md's VLM line, :func:`vlm_line`), which was written before the grounding existed."""
    report_json = folder / "report.json"
    if report_json.is_file():
        try:
            data = json.loads(report_json.read_text())
        except ValueError as e:  # the grounding and model.json are written; a broken report must not undo that
            logger.warning("%s is not valid JSON (%s); its VLM note is left as it was: rewrite the report with "
                           "`genrl report`", report_json, e)
            data = None
        model = data.get("model") if isinstance(data, dict) else None
        vlm = model.get("vlm") if isinstance(model, dict) else None
        if isinstance(vlm, dict):
            vlm["note"] = summary["note"]
            with atomic_write(report_json, "w") as f:
                json.dump(data, f, indent=2, default=str)
    report_md = folder / "REPORT.md"
    if report_md.is_file():
        lines = report_md.read_text().split("\n")
        for i, line in enumerate(lines):
            if line.startswith("- VLM: "):
                lines[i] = vlm_line(summary)
                with atomic_write(report_md, "w") as f:
                    f.write("\n".join(lines))
                break


def ground_model(model: str | os.PathLike[str], *, out: str | os.PathLike[str] | None = None,
                 store: str | os.PathLike[str] | None = None, seeds: int = DEFAULT_SEEDS,
                 horizon: int = DEFAULT_TARGET_HORIZON, method: str = DEFAULT_METHOD, ridge: float = DEFAULT_RIDGE,
                 threshold: float = DEFAULT_THRESHOLD, caption_sets: Sequence[str] = DEFAULT_CAPTION_SETS,
                 command: str | None = None) -> tuple[TextGrounding, Path]:
    """Fit a model's grounding from its shipped/packaged prompt clips (and ``store``), write ``grounding.npz`` beside
    it (or into ``out``) and record it in ``model.json["text_grounding"]`` when that file exists there.

    :param caption_sets: the fitting caption sets of ``captions.json`` (:func:`task_captions`; the anchors follow them).

    :return: ``(grounding, path written)``.
    """
    path, _ = resolve_model_path(model)
    mfwm = resolve_model(model)
    local = path.parent / "prompts"
    clips: dict[str, Path] = {}
    for suffix in (".gif", ".mp4", ".webm"):  # the model's own clips, else the shipped ones of its domain
        for p in sorted(local.glob(f"*{suffix}")) if local.is_dir() else []:
            clips.setdefault(p.stem, p)
    if not clips:
        clips = {t: p for (_, t), p in list_examples(mfwm.domain).items()}
    order = {t: i for i, t in enumerate(tasks_of(mfwm.domain))}  # the task table's order
    clips = dict(sorted(clips.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
    windows = model_task_windows(mfwm, clips, seeds=seeds, horizon=horizon) if clips else {}
    sources = [f"decoded connector targets ({horizon} steps) of the prompt clips {sorted(clips)} x {seeds} seeds "
               "(each clip embedded as the mean over its 8-frame windows, the rule since session 21)"]
    if store is not None:
        extra = _store_windows(store, list(clips) or None)
        for task, w in extra.items():
            windows[task] = np.concatenate([windows[task], w]) if task in windows else w
        sources.append(f"episode store {store}")
    if not windows:
        raise ValueError(f"model {model}: no task-labelled windows to fit on (no prompt clips in {local} and no --store)")
    info = {"data": sources, "command": command or "genrl ground --model " + os.fspath(model),
            "model_weights_sha256": mfwm.weights_sha256(), "caption_sets": list(caption_sets)}
    tasks = list(windows)
    grounding = fit_text_grounding(mfwm, windows, task_captions(mfwm.domain, tasks, caption_sets), method=method,
                                   ridge=ridge, threshold=threshold, anchors=anchor_captions(mfwm.domain, tasks,
                                                                                             caption_sets), info=info)
    target_dir = Path(out) if out is not None else path.parent
    written = grounding.save(target_dir / GROUNDING_FILE)
    record_in_model_json(target_dir / "model.json", grounding)
    mfwm.text_grounding = grounding

    clear_cache(mfwm)
    print(f"text grounding of {mfwm.domain} ({', '.join(grounding.behaviours)}) written to {written}", file=sys.stderr)
    return grounding, written
