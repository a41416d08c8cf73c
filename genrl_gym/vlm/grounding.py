"""Text grounding of a video-only model: a fitted map from a sentence encoder's space into the model's VLM video space.

A model trained with the offline ``video-only`` VLM has no language. :class:`TextGrounding` gives it text for the
behaviours in its own data: the sentence encoder (:mod:`genrl_gym.vlm.text_encoder`) embeds the phrase, a map
fitted by :func:`genrl_gym.training.grounding.fit_text_grounding` on pairs (caption of task k, VLM embedding of an
8-frame window of task k) turns it into a video embedding (kernel regression over the fitting captions by default; a
ridge map is the alternative), and :class:`GroundedTextVLM` hands that to GenRL's text path (-> connector -> target) as
a text embedding. The result is already a video embedding, so, as video prompts, it skips the aligner by default
(measured on walker: with the aligner 0 of 12 held-out "run" phrasings scored the run frames highest, without it 10).

It grounds paraphrases of the model's behaviours, not new behaviours. A phrase is grounded when

* ``s >= threshold``: ``s`` is its highest cosine similarity (sentence space) to the model's fitting captions, and
* ``s > a``: ``a`` is its highest similarity to the *anchor* captions, behaviours the model has no data of (the
  ``unknown`` list of ``captions.json``, the domain's other tasks in the task table, and the behaviour names of
  ``captions.json`` the model lacks): a phrase closer to one of those is about something else;

otherwise :meth:`TextGrounding.check` raises a PromptError naming the known behaviours, ``s``, ``a`` and the threshold,
and how to get a model with a real VLM. The threshold and the anchor rule were set from measurements
(benchmarks/text_grounding.py; each shipped model's REPORT.md, "Text prompts").

Before embedding, a leading subject is left out ("the agent is running" -> "running") and a word that no caption uses
is replaced by the caption verb WordNet puts above it ("amble along" -> "walk along", "scurry" -> "run";
:mod:`genrl_gym.vlm.lexicon`), because the sentence encoder weighs the subject as much as the verb and knows rare verbs
badly.

A grounding is saved beside its model as ``grounding.npz`` (arrays and one JSON string; no pickles) and loaded with the
model by :func:`genrl_gym.model_store.resolve_model`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrl_gym.utils import PromptError, VLMError, atomic_write
from genrl_gym.vlm.lexicon import Substitution, load_motion_lexicon, rewrite, words
from genrl_gym.vlm.text_encoder import load_sentence_encoder

__all__ = ["GROUNDING_FILE", "DEFAULT_THRESHOLD", "TextGrounding", "GroundedTextVLM", "captions", "Grounded"]

logger = logging.getLogger(__name__)

#: File name of a model's grounding, beside its checkpoint.
GROUNDING_FILE = "grounding.npz"
#: Lowest sentence similarity to a known behaviour's captions that is grounded (measured: benchmarks/text_grounding.py).
DEFAULT_THRESHOLD = 0.40
_FORMAT = "genrl-gym-text-grounding"
_VERSION = 1


@lru_cache(maxsize=1)
def captions() -> dict[str, Any]:
    """The caption sets shipped in ``genrl_gym/vlm/captions.json``: ``fitting``, ``fitting_extra`` and ``heldout``
    ``{behaviour: [text]}``, ``offtask`` and ``unknown`` ``[text]`` (see its ``about``)."""
    with open(Path(__file__).with_name("captions.json"), encoding="utf-8") as f:
        return json.load(f)


@dataclass(frozen=True)
class Grounded:
    """How a phrase was grounded: ``behaviour`` (closest known), ``caption`` (its closest fitting caption),
    ``similarity`` ``s``, ``anchor`` (closest anchor caption) and its similarity ``a``; ``via``: the rare words replaced
    before embedding (:mod:`genrl_gym.vlm.lexicon`), ``phrase``: the text embedded."""

    text: str
    behaviour: str
    caption: str
    similarity: float
    anchor: str
    anchor_similarity: float
    via: tuple[Substitution, ...] = ()
    phrase: str = ""

    def reading(self) -> str:
        """``" (read as 'walk along': WordNet puts 'amble' under 'walk')"`` when the phrase was changed before
        embedding (a rare verb replaced, a subject left out), else ``""``."""
        if not self.via:
            return ""
        return f" (read as {self.phrase!r}: {'; '.join(s.explain() for s in self.via)})"


@dataclass
class TextGrounding:
    """A model's text map and the behaviours it knows (see the module docstring).

    :param coef: ridge coefficients ``float32 [E, K]`` (E = 384 sentence dims, K behaviours); empty ``[E, 0]`` for the
        kernel method.
    :param task_embeddings: mean VLM embedding of each behaviour's fitting windows ``float32 [K, D]``.
    :param method: ``"kernel"`` (default fit): Nadaraya-Watson regression over the fitting captions,
        ``y(x) = sum_c softmax_c(cos(x, c) / temperature) Y_c`` with ``Y_c`` the mean window embedding of caption c's
        behaviour; or ``"ridge"``: the linear map ``W = coef @ task_embeddings`` (``[E, D]``; every fitting pair's target
        is a window of one behaviour, so the least-squares solution has rank <= K and is stored factorised).
    :param temperature: the kernel's temperature (chosen by leave-one-caption-out on the fitting captions).
    :param behaviours: known behaviour (task) names, e.g. ``["stand", "walk", "run"]``.
    :param caption_texts: fitting captions; :param caption_labels: their behaviour index ``int [Nc]``;
    :param caption_embeddings: their sentence embeddings ``float32 [Nc, E]``.
    :param anchor_texts: / :param anchor_embeddings: ``float32 [Na, E]``: behaviours the model has no data of.
    :param threshold: lowest similarity grounded.
    :param encoder: / :param encoder_sha256: the sentence encoder's name and weights digest.
    :param vlm: the VLM identity dict of the video space mapped into.
    :param info: how it was fitted (JSON-able; windows per task, ridge, command, date...).
    """

    coef: np.ndarray
    task_embeddings: np.ndarray
    behaviours: list[str]
    caption_texts: list[str]
    caption_labels: np.ndarray
    caption_embeddings: np.ndarray
    anchor_texts: list[str]
    anchor_embeddings: np.ndarray
    threshold: float
    encoder: str
    encoder_sha256: str
    vlm: dict[str, Any]
    domain: str = "unknown"
    method: str = "kernel"
    temperature: float = 0.05
    info: dict[str, Any] = field(default_factory=dict)
    _vocab: tuple[frozenset[str], dict[str, str]] | None = field(default=None, init=False, repr=False, compare=False)

    # ------------------------------------------------------------------------------------------------ text -> video space
    def _encoder(self) -> Any:
        enc = load_sentence_encoder()
        if enc.sha256 != self.encoder_sha256 or enc.name != self.encoder:
            raise VLMError(f"this text grounding was fitted with {self.encoder} (sha256 {self.encoder_sha256}) but the "
                           f"installed encoder is {enc.name} (sha256 {enc.sha256}); refit it with `genrl ground --model "
                           "<model>`")
        return enc

    def _vocabulary(self) -> tuple[frozenset[str], dict[str, str]]:
        """Words the captions use (never replaced) and the head verbs (one-word captions of this grounding and of
        captions.json's fitting sets, so a behaviour the model lacks is a head too and its synonyms are refused)."""
        if self._vocab is None:
            c = captions()
            sets = [c[name] for name in c if name.startswith("fitting")]
            texts = [*self.caption_texts, *self.anchor_texts, *c["unknown"],
                     *(t for s in sets for v in s.values() for t in v)]
            lexicon = load_motion_lexicon()
            heads: dict[str, str] = {}
            for t in texts:
                if len(ws := words(t)) == 1:
                    w = ws[0]
                    lemma = lexicon.lemma(w) or w
                    heads[lemma] = w if w.endswith("ing") else heads.get(lemma, lemma)
            self._vocab = (frozenset(w for t in texts for w in words(t)), heads)
        return self._vocab

    def phrase(self, text: str) -> tuple[str, list[Substitution]]:
        """The text to embed for ``text``: rare motion verbs replaced by the caption verb above them
        (:func:`genrl_gym.vlm.lexicon.rewrite`), and the substitutions made."""
        known, heads = self._vocabulary()
        return rewrite(text, known, heads)

    def assess(self, text: str, sentence: np.ndarray | None = None,
               reading: tuple[str, Sequence[Substitution]] | None = None) -> Grounded:
        """Closest known behaviour and closest anchor of one phrase (no refusal; :meth:`check` refuses).
        ``reading``: :meth:`phrase` of ``text`` and ``sentence`` its embedding, when already computed."""
        phrase, via = reading if reading is not None else self.phrase(text)
        if sentence is None:
            sentence = self._encoder().encode([phrase])[0]
        s = self.caption_embeddings @ sentence
        i = int(s.argmax())
        if len(self.anchor_texts):
            a = self.anchor_embeddings @ sentence
            j = int(a.argmax())
            anchor, a_sim = self.anchor_texts[j], float(a[j])
        else:
            anchor, a_sim = "", -1.0
        return Grounded(text, self.behaviours[int(self.caption_labels[i])], self.caption_texts[i], float(s[i]), anchor,
                        a_sim, tuple(via), phrase)

    def is_grounded(self, g: Grounded) -> bool:
        """The grounding rule: ``similarity >= threshold`` and ``similarity > anchor_similarity``."""
        return g.similarity >= self.threshold and g.similarity > g.anchor_similarity

    def check(self, text: str, sentence: np.ndarray | None = None,
              reading: tuple[str, Sequence[Substitution]] | None = None) -> Grounded:
        """:meth:`assess` one phrase; PromptError if it is not grounded; logs (INFO) the closest behaviour if it is."""
        g = self.assess(text, sentence, reading)
        if not self.is_grounded(g):
            why = (f"its highest similarity to the captions of a behaviour this model knows is {g.similarity:.2f} "
                   f"({g.behaviour}: {g.caption!r})")
            if g.similarity < self.threshold:
                why += f", below the grounding threshold {self.threshold:.2f}"
            if g.similarity <= g.anchor_similarity:
                why += (f", and it is closer ({g.anchor_similarity:.2f}) to {g.anchor!r}, a behaviour that is not in "
                        "this model's data")
            raise PromptError(
                f"text prompt {text!r}{g.reading()} cannot be grounded by this {self.domain} model: {why}. Offline text "
                f"prompts are paraphrases of the behaviours in the model's data, which are: "
                f"{', '.join(self.behaviours)}. Use one of those (e.g. {self.behaviours[-1]!r}), a video prompt "
                "(`genrl prompts` lists the shipped clips), or build a model with a "
                f"real video-language VLM for open vocabulary: `genrl pipeline --domain {self.domain} --vlm "
                "open_clip:ViT-B-32:/path/to/open_clip_weights.bin` (see docs/text-prompts.md)")
        logger.info("text prompt %r%s grounded as %r (similarity %.2f to %r; threshold %.2f)", text, g.reading(),
                    g.behaviour, g.similarity, g.caption, self.threshold)
        return g

    def map(self, sentences: np.ndarray) -> np.ndarray:
        """Sentence embeddings ``[N, E]`` -> unit-norm video-space embeddings ``float32 [N, D]`` (no refusal)."""
        y = self.behaviour_weights(sentences) @ self.task_embeddings
        return (y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)).astype(np.float32)

    def behaviour_weights(self, sentences: np.ndarray) -> np.ndarray:
        """Sentence embeddings ``[N, E]`` -> weights ``float32 [N, K]`` of the behaviours' mean embeddings in the map."""
        x = np.asarray(sentences, dtype=np.float32).reshape(-1, self.caption_embeddings.shape[1])
        if self.method == "ridge":
            return x @ self.coef
        if self.method != "kernel":
            raise VLMError(f"unknown text grounding method {self.method!r} (this genrl-gym reads 'kernel' and 'ridge')")
        logits = (x @ self.caption_embeddings.T) / self.temperature
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        return (w @ np.eye(len(self.behaviours), dtype=np.float32)[self.caption_labels]).astype(np.float32)

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Check and map texts -> float32 ``[N, D]`` unit-norm (CPU); PromptError for a phrase it cannot ground."""
        readings = [self.phrase(t) for t in texts]
        sentences = self._encoder().encode([phrase for phrase, _ in readings])
        for text, reading, e in zip(texts, readings, sentences):
            self.check(text, e, reading)
        return torch.from_numpy(self.map(sentences))

    # ------------------------------------------------------------------------------------------------ save / load
    def fingerprint(self) -> str:
        """Short digest of the map and the rule (part of prompt-cache keys)."""
        h = hashlib.sha256(np.ascontiguousarray(self.coef, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(self.task_embeddings, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(self.caption_embeddings, dtype=np.float32).tobytes())
        h.update(f"{self.method}|{self.temperature}|{self.threshold}|{len(self.anchor_texts)}".encode())
        return h.hexdigest()[:12]

    def record(self) -> dict[str, Any]:
        """What ``model.json["text_grounding"]`` records: encoder, sha256, counts, threshold, how it was fitted."""
        return {"file": GROUNDING_FILE, "encoder": self.encoder, "encoder_sha256": self.encoder_sha256,
                "behaviours": list(self.behaviours), "fitting_captions": len(self.caption_texts),
                "anchor_captions": len(self.anchor_texts), "threshold": self.threshold,
                "rule": "grounded iff max cos(phrase, fitting captions) >= threshold and > max cos(phrase, anchors)",
                "method": self.method, "temperature": self.temperature,
                "fingerprint": self.fingerprint(), **self.info}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``grounding.npz`` atomically (no pickled objects). Returns the path."""
        path = Path(path)
        meta = {"format": _FORMAT, "version": _VERSION, "behaviours": self.behaviours, "caption_texts": self.caption_texts,
                "anchor_texts": self.anchor_texts, "threshold": self.threshold, "encoder": self.encoder,
                "encoder_sha256": self.encoder_sha256, "vlm": self.vlm, "domain": self.domain, "method": self.method,
                "temperature": self.temperature, "info": self.info}
        with atomic_write(path, "wb") as f:
            np.savez_compressed(f, coef=self.coef.astype(np.float32),
                                task_embeddings=self.task_embeddings.astype(np.float32),
                                caption_labels=self.caption_labels.astype(np.int64),
                                caption_embeddings=self.caption_embeddings.astype(np.float32),
                                anchor_embeddings=self.anchor_embeddings.astype(np.float32).reshape(-1, self.coef.shape[0]),
                                meta=np.array(json.dumps(meta)))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, expect_vlm: dict[str, Any] | None = None) -> TextGrounding:
        """Read a ``grounding.npz``; VLMError for a foreign/corrupt file or one fitted for another VLM space."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("format") != _FORMAT:
                    raise ValueError(f"not a text grounding (format {meta.get('format')!r})")
                g = cls(coef=z["coef"], task_embeddings=z["task_embeddings"], behaviours=list(meta["behaviours"]),
                        caption_texts=list(meta["caption_texts"]), caption_labels=z["caption_labels"],
                        caption_embeddings=z["caption_embeddings"], anchor_texts=list(meta["anchor_texts"]),
                        anchor_embeddings=z["anchor_embeddings"], threshold=float(meta["threshold"]),
                        encoder=meta["encoder"], encoder_sha256=meta["encoder_sha256"], vlm=dict(meta["vlm"]),
                        domain=meta.get("domain", "unknown"), method=meta.get("method", "ridge"),
                        temperature=float(meta.get("temperature", 0.05)), info=dict(meta.get("info", {})))
        except Exception as e:
            raise VLMError(f"{path}: unreadable text grounding ({type(e).__name__}: {e}); refit it with `genrl ground "
                           "--model <model>` or delete it") from e
        if expect_vlm is not None and dict(expect_vlm) != g.vlm:
            raise VLMError(f"{path}: this text grounding maps into the VLM space {g.vlm}, but the model's VLM is "
                           f"{dict(expect_vlm)}; refit it with `genrl ground --model <model>`")
        return g


class GroundedTextVLM:
    """A video-only VLM with a text tower: video as the wrapped VLM (same identity, so the world model's checks pass),
    text through a :class:`TextGrounding` (``has_language`` True)."""

    has_language = True
    #: embed_text returns embeddings on the video-embedding manifold (prompts skip the aligner for a grounded model)
    text_space = "video"

    def __init__(self, vlm: Any, grounding: TextGrounding) -> None:
        if dict(grounding.vlm) != _identity(vlm):
            raise VLMError(f"text grounding for VLM {grounding.vlm} cannot extend VLM {_identity(vlm)}")
        self.vlm = vlm
        self.grounding = grounding
        self.identity = vlm.identity
        self.window = vlm.window

    @property
    def embed_dim(self) -> int:
        """D, the wrapped VLM's embedding size."""
        return int(self.vlm.embed_dim)

    def __repr__(self) -> str:
        return f"GroundedTextVLM({self.vlm!r}, text {self.grounding.encoder} -> {', '.join(self.grounding.behaviours)})"

    def embed_video(self, frames: Any) -> torch.Tensor:
        """The wrapped VLM's video embedding."""
        return self.vlm.embed_video(frames)

    def embed_sliding(self, frames: Any) -> torch.Tensor:
        """The wrapped VLM's sliding-window embedding (when it has one)."""
        return self.vlm.embed_sliding(frames)

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> ``[N, D]`` video-space embeddings (:meth:`TextGrounding.embed_text`; PromptError if ungroundable)."""
        return self.grounding.embed_text(texts)


def _identity(vlm: Any) -> dict[str, Any]:
    ident = vlm.identity
    return ident.to_dict() if hasattr(ident, "to_dict") else dict(ident)
