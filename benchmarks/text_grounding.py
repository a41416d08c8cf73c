"""Text prompts of the shipped (video-only) models through their text groundings: discrimination and refusals.

Run from the repo root: ``.venv/bin/python -m benchmarks.text_grounding [--domains walker cheetah ...] [--no-report]``.
Writes ``benchmarks/results/text_grounding.{json,md}`` and a "Text prompts" section at the end of each model's
REPORT.md (``genrl_gym/pretrained/<domain>/REPORT.md``; the section is replaced when it exists).

For each model (its ``grounding.npz`` loaded with it):

* **discrimination matrix** on the ``heldout`` phrasings of ``genrl_gym/vlm/captions.json`` (never used in fitting):
  entry (phrase, task b) is the mean GenRL reward per step of the phrase's target (GenRL's text path: sentence
  encoder -> map -> aligner -> connector) on task b's frames, computed as the envs compute it (posterior-mode reward
  features of each frame, the model's alignment against the target, reset frame excluded; as
  tests/test_pretrained_discrimination.py). Task b's frames are the model's shipped prompt clip of b (32 frames cut
  from the model's held-out store, never trained on); a column of random-action episodes is added (the only check a
  one-task model has). Criterion: every phrasing scores its own task's frames highest (and above random).
* **refusals**: the share of off-task phrases (``offtask`` of captions.json, and the held-out phrasings of behaviours
  the model lacks) that are refused, and of on-task held-out phrasings that are grounded; with each phrase's sentence
  similarity ``s`` to the model's captions and ``a`` to the anchors, from which the threshold was set.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import genrl_gym  # noqa: F401  (render/torch guard)
import numpy as np

from benchmarks._machine import write_results
from genrl_gym.model_store import PRETRAINED_DIR, resolve_model
from genrl_gym.prompts import example, read_video, target_from_prompt
from genrl_gym.reward import env_rewards, posterior_modes, target_horizon
from genrl_gym.training.report.numbers import random_episode_frames
from genrl_gym.utils import PromptError, atomic_write
from genrl_gym.vlm.grounding import captions

DOMAINS = ("walker", "cheetah", "quadruped", "stickman")
RANDOM_EPISODES = 2
RANDOM_FRAMES = 250
SECTION = "## Text prompts"


def text_discrimination(model: Any, *, random_episodes: int = RANDOM_EPISODES, random_frames: int = RANDOM_FRAMES,
                        phrase_set: str = "heldout") -> dict[str, Any]:
    """The text discrimination matrix and refusal measurements of one grounded model (see the module docstring).

    :param phrase_set: ``"heldout"`` (the test: phrasings never used in fitting) or ``"fitting"`` (the validation of a
        fitting choice: the model's own fitting captions, which map onto its behaviours' prototypes).
    """
    if phrase_set not in ("heldout", "fitting"):
        raise ValueError(f"phrase_set must be 'heldout' or 'fitting', got {phrase_set!r}")
    grounding = model.text_grounding
    if grounding is None:
        raise ValueError(f"the {model.domain} model has no text grounding: fit one with `genrl ground --model ...`")
    tasks = list(grounding.behaviours)
    c = captions()
    align = model.reward_align
    horizon = target_horizon(align)
    columns = {b: posterior_modes(model, read_video(example(model.domain, b)))[1] for b in tasks}
    rand = [posterior_modes(model, f)[1] for f in random_episode_frames(model, tasks[0], random_episodes,
                                                                        episode_frames=random_frames)]

    def row(target_features: Any) -> dict[str, float]:
        out = {b: float(env_rewards(columns[b], target_features, align=align)[1:].mean()) for b in tasks}
        r = [env_rewards(f, target_features, align=align)[1:] for f in rand]
        out["random"] = float(np.concatenate(r).mean())
        return out

    clip_rows = {b: row(target_from_prompt(model, example(model.domain, b), horizon=horizon).features) for b in tasks}
    phrases: list[dict[str, Any]] = []
    phrase_sets = c["heldout"] if phrase_set == "heldout" else {  # the captions the grounding was fitted on
        b: [t for t, k in zip(grounding.caption_texts, grounding.caption_labels) if tasks[int(k)] == b] for b in tasks}
    for task in tasks:
        for text in phrase_sets.get(task, []):
            g = grounding.assess(text)
            entry: dict[str, Any] = {"task": task, "text": text, "similarity": g.similarity, "closest": g.behaviour,
                                     "anchor": g.anchor, "anchor_similarity": g.anchor_similarity,
                                     "read_as": g.phrase if g.via else None}
            try:
                target = target_from_prompt(model, text, horizon=horizon)
            except PromptError as e:
                entry.update(grounded=False, error=str(e))
            else:
                r = row(target.features)
                best = max(tasks, key=lambda b: r[b])
                entry.update(grounded=True, kind=target.kind, aligned=target.aligned, row=r, best=best,
                             own_highest=best == task, above_random=r[task] > r["random"])
            phrases.append(entry)
    offtask = [t for b, texts in c["heldout"].items() if b not in tasks for t in texts] + list(c["offtask"])
    off: list[dict[str, Any]] = []
    for text in offtask:
        g = grounding.assess(text)
        off.append({"text": text, "similarity": g.similarity, "closest": g.behaviour, "anchor": g.anchor,
                    "anchor_similarity": g.anchor_similarity, "refused": not grounding.is_grounded(g),
                    "read_as": g.phrase if g.via else None})
    if phrase_set == "heldout":  # which batch (written when) each held-out phrasing belongs to
        for p in phrases:
            p["batch"] = heldout_batch(c, p["task"], p["text"])
    grounded = [p for p in phrases if p["grounded"]]
    per_task = {t: {"phrasings": sum(p["task"] == t for p in phrases),
                    "grounded": sum(p["task"] == t and p["grounded"] for p in phrases),
                    "own_highest": sum(p["task"] == t and p.get("own_highest", False) for p in phrases),
                    "above_random": sum(p["task"] == t and p.get("above_random", False) for p in phrases),
                    "passed": sum(p["task"] == t and p.get("own_highest", False) and p.get("above_random", False)
                                  for p in phrases)}
                for t in tasks}
    return {"domain": model.domain, "tasks": tasks, "align": align, "target_steps": horizon + 1,
            "threshold": grounding.threshold, "grounding": grounding.record(), "clip_rows": clip_rows,
            "phrase_set": phrase_set,
            "phrases": phrases, "offtask": off, "per_task": per_task, "per_batch": _per_batch(phrases),
            "all_grounded_own_highest": all(p["own_highest"] for p in grounded),
            "grounded_share": len(grounded) / max(len(phrases), 1),
            "refused_share": sum(o["refused"] for o in off) / max(len(off), 1),
            "random_episodes": random_episodes, "random_frames": random_frames}


def heldout_batch(c: dict[str, Any], task: str, text: str) -> str:
    """The label of the ``heldout_batches`` entry of captions.json that holds ``text`` (by its index in the task's list)."""
    i, start = c["heldout"][task].index(text), 0
    for label, count in c["heldout_batches"]:
        if start <= i < start + count:
            return str(label)
        start += count
    raise ValueError(f"held-out phrasing {text!r} of {task} is in no batch of captions.json 'heldout_batches'")


def _per_batch(phrases: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for p in phrases:
        if "batch" in p:
            b = out.setdefault(p["batch"], {"phrasings": 0, "passed": 0})
            b["phrasings"] += 1
            b["passed"] += int(p.get("own_highest", False) and p.get("above_random", False))
    return out


def _table(r: dict[str, Any]) -> str:
    tasks = r["tasks"]
    kind = "held-out" if r["phrase_set"] == "heldout" else "fitting"
    head = f"| phrase ({kind}) | task | s | " + " | ".join(f"{b} frames" for b in tasks) + " | random | own highest? |"
    lines = [head, "|" + "---|" * (len(tasks) + 5)]
    for b in tasks:
        cr = r["clip_rows"][b]
        lines.append(f"| *{b} clip (video)* | {b} | | " + " | ".join(f"{cr[x]:.3f}" for x in tasks)
                     + f" | {cr['random']:.3f} | |")
    for p in r["phrases"]:
        text = p["text"] + (f" (read as '{p['read_as']}')" if p.get("read_as") else "")
        if not p["grounded"]:
            lines.append(f"| {text} | {p['task']} | {p['similarity']:.2f} | "
                         + " | ".join("—" for _ in tasks) + f" | — | refused (closer to {p['anchor']!r}, "
                         f"{p['anchor_similarity']:.2f}) |" if p["similarity"] <= p["anchor_similarity"] else
                         f"| {text} | {p['task']} | {p['similarity']:.2f} | " + " | ".join("—" for _ in tasks)
                         + " | — | refused (below threshold) |")
            continue
        row = p["row"]
        cells = [f"**{row[x]:.3f}**" if x == p["task"] else f"{row[x]:.3f}" for x in tasks]
        lines.append(f"| {text} | {p['task']} | {p['similarity']:.2f} | " + " | ".join(cells)
                     + f" | {row['random']:.3f} | {'yes' if p['own_highest'] and p['above_random'] else 'NO'} |")
    return "\n".join(lines)


def _method(g: dict[str, Any]) -> str:
    if g.get("method") == "kernel":
        return f"kernel regression over the captions (temperature {g['temperature']:g}, by leave-one-caption-out)"
    return f"ridge map (penalty {g.get('ridge')})"


def _rule_table(s_on: np.ndarray, m_on: np.ndarray, s_off: np.ndarray, m_off: np.ndarray, threshold: float) -> str:
    """On-task grounded / off-task refused under the threshold alone, the anchor rule alone, and both."""
    def counts(ok_on: np.ndarray, ok_off: np.ndarray) -> str:
        return f"on-task grounded {int(ok_on.sum())}/{len(ok_on)}, off-task refused {int((~ok_off).sum())}/{len(ok_off)}"

    parts = [f"threshold {t:.2f} alone: {counts(s_on >= t, s_off >= t)}" for t in (threshold, 0.5, 0.6)]
    parts.append(f"anchors alone: {counts(m_on > 0, m_off > 0)}")
    parts.append(f"both (the rule): {counts((s_on >= threshold) & (m_on > 0), (s_off >= threshold) & (m_off > 0))}")
    return "; ".join(parts)


def markdown(r: dict[str, Any]) -> str:
    """The "Text prompts" REPORT.md section of one model."""
    g = r["grounding"]
    n = sum(v["phrasings"] for v in r["per_task"].values())
    ok = sum(v["passed"] for v in r["per_task"].values())
    grounded = sum(v["grounded"] for v in r["per_task"].values())
    counts = ", ".join(f"{t}: {v['passed']}/{v['phrasings']}" for t, v in r["per_task"].items())
    on = [p for p in r["phrases"]]
    s_on = np.array([p["similarity"] for p in on])
    m_on = np.array([p["similarity"] - p["anchor_similarity"] for p in on])
    s_off = np.array([o["similarity"] for o in r["offtask"]])
    m_off = np.array([o["similarity"] - o["anchor_similarity"] for o in r["offtask"]])
    refused_on = [p["text"] for p in on if not p["grounded"]]
    accepted_off = [o["text"] for o in r["offtask"] if not o["refused"]]
    heldout = r["phrase_set"] == "heldout"
    return "\n".join([
        SECTION, "",
        f"This model's VLM is video-only; text reaches it through its text grounding (`grounding.npz`, "
        f"docs/text-prompts.md): rare motion verbs are first read as the caption verb WordNet puts above them "
        "(\"amble\" as \"walk\", shown as *read as*), the sentence encoder "
        f"{g['encoder']} (sha256 `{g['encoder_sha256'][:16]}…`) embeds the phrase, a {_method(g)} (fitted on "
        f"{g['windows']} of the model's own 8-frame windows of {', '.join(r['tasks'])} and {g['fitting_captions']} "
        "captions) puts it in the video space, and GenRL's text "
        "path makes the target with the connector (no aligner: the mapped embedding already is a video embedding). "
        "Offline text means paraphrases of these behaviours, not new ones.",
        "",
        ("**Held-out phrasings** (never used in fitting, `captions.json` `heldout`): " if heldout else
         "**Fitting captions** (a validation, not the test: the task table's prompt and `captions.json` `fitting`): ")
        + f"{grounded} of {n} grounded; "
        f"**{ok} of {n} score their own task's frames highest and above random** ({counts}; a refused phrasing "
        "counts as a failure)." + (" With one task, the random column is the only comparison." if len(r["tasks"]) == 1
                                    else "")
        + ("" if not r.get("per_batch") else " By batch of phrasings (written at different times; the batches of "
           "sessions 18 and 19 were each written before that session's change of the text path, the fitting captions "
           "and anchors in 18 and the WordNet motion verbs in 19, so the last batch is the fair test of the current "
           "one): " + ", ".join(f"{k} {v['passed']}/{v['phrasings']}" for k, v in
                                                r["per_batch"].items()) + ".")
        + " Entry: mean GenRL reward per step of the "
        f"phrase's target ({r['target_steps']} steps, `{r['align']}` alignment, as the envs) on each task's shipped "
        f"clip frames (32 held-out frames each) and on {r['random_episodes']} random-action episodes of "
        f"{r['random_frames']} frames; `s` is the phrase's sentence similarity to the model's nearest caption.",
        "",
        _table(r), "",
        f"**Refusals.** Grounded iff `s >= {r['threshold']:.2f}` and `s` exceeds the similarity `a` to the nearest "
        f"*anchor* caption ({g['anchor_captions']} behaviours outside this model's data). Measured: "
        f"{'held-out on-task phrasings' if heldout else 'on-task fitting captions'} s {s_on.min():.2f}..{s_on.max():.2f} "
        f"(s - a {m_on.min():+.2f}..{m_on.max():+.2f}); "
        f"off-task phrases ({len(r['offtask'])}: e.g. 'do a backflip', 'make coffee', 'fly', 'swim', 'read a book', and "
        f"the held-out phrasings of behaviours this model lacks) s {s_off.min():.2f}..{s_off.max():.2f} "
        f"(s - a {m_off.min():+.2f}..{m_off.max():+.2f}). The similarity ranges overlap, so a threshold alone cannot "
        f"separate them: {_rule_table(s_on, m_on, s_off, m_off, r['threshold'])}. "
        f"Off-task refused: {sum(o['refused'] for o in r['offtask'])}/{len(r['offtask'])}"
        + (f" (accepted: {', '.join(repr(t) for t in accepted_off)})" if accepted_off else "")
        + f"; on-task refused: {len(refused_on)}/{n}"
        + (f" ({', '.join(repr(t) for t in refused_on)})" if refused_on else "") + ".",
        "",
        f"Reproduce: `{g.get('command', 'genrl ground --model ' + r['domain'])}`, then "
        f"`python -m benchmarks.text_grounding --domains {r['domain']}"
        + ("" if heldout else " --phrases fitting") + "`.", ""])


def write_report_section(domain: str, section: str, root: Path = PRETRAINED_DIR) -> Path:
    """Replace (or append) the "Text prompts" section of ``<root>/<domain>/REPORT.md``."""
    path = root / domain / "REPORT.md"
    text = path.read_text()
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub("", text).rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    with atomic_write(path, "w") as f:
        f.write(text)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domains", nargs="*", default=list(DOMAINS),
                   help="shipped models by domain name, or model folders (those with --no-report)")
    p.add_argument("--no-report", action="store_true", help="do not touch the models' REPORT.md")
    p.add_argument("--phrases", choices=("heldout", "fitting"), default="heldout",
                   help="held-out phrasings (the test; default) or the fitting captions (validation of a fitting "
                        "choice, written to text_grounding_fitting.*, never into REPORT.md)")
    args = p.parse_args(argv)
    results, tables = {}, []
    for domain in args.domains:
        r = text_discrimination(resolve_model(domain), phrase_set=args.phrases)
        results[domain] = r
        section = markdown(r)
        tables.append(section.replace(SECTION, f"## {domain}", 1))
        if not args.no_report and args.phrases == "heldout":
            write_report_section(domain, section)
        print(f"{domain}: own task highest and above random {sum(v['passed'] for v in r['per_task'].values())}/"
              f"{sum(v['phrasings'] for v in r['per_task'].values())}, off-task refused {r['refused_share']:.0%}")
    write_results("text_grounding" if args.phrases == "heldout" else "text_grounding_fitting", results,
                  "\n\n".join(tables))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
