"""The WordNet motion-verb lexicon of the text grounding: building it from WordNet's files, reading it, rewriting."""

from __future__ import annotations

from pathlib import Path

import pytest

from genrl_gym.vlm.lexicon import build_motion_lexicon, drop_subject, load_motion_lexicon, rewrite

# A tiny WordNet in its own file format (wndb(5)): offset lexfile pos word-count words pointer-count pointers | gloss.
# Lexfile 38 is verb.motion, 32 verb.communication.
DATA_VERB = """\
  1 This header line is skipped, as in WordNet's files
00000001 38 v 01 travel 0 000 | change location
00000002 38 v 01 walk 0 001 @ 00000001 v 0000 | use one's feet to advance
00000003 38 v 02 amble 0 mosey 0 001 @ 00000002 v 0000 | walk leisurely
00000004 32 v 01 ramble 0 001 @ 00000009 v 0000 | continue talking
00000005 38 v 02 roam 0 ramble 0 001 @ 00000001 v 0000 | move about aimlessly
00000006 38 v 01 swim 0 001 @ 00000001 v 0000 | travel through water
00000007 38 v 02 scurry 0 scamper 0 001 @ 00000008 v 0000 | move about hurriedly
00000008 38 v 01 run 0 001 @ 00000001 v 0000 | move fast on foot
00000009 32 v 01 talk 0 000 | speak
00000010 38 v 02 plod 0 walk_heavily 0 001 @ 00000002 v 0000 | walk heavily
"""
INDEX_VERB = """\
  1 header
amble v 1 1 @ 1 0 00000003
mosey v 1 1 @ 1 0 00000003
plod v 1 1 @ 1 0 00000010
ramble v 2 1 @ 2 0 00000004 00000005
roam v 1 1 @ 1 0 00000005
run v 1 1 @ 1 0 00000008
scamper v 1 1 @ 1 0 00000007
scurry v 1 1 @ 1 0 00000007
swim v 1 1 @ 1 0 00000006
talk v 1 1 @ 1 0 00000009
travel v 1 1 @ 1 0 00000001
walk v 1 1 @ 1 0 00000002
walk_heavily v 1 1 @ 1 0 00000010
"""
HEADS = {"walk": "walking", "run": "running"}


@pytest.fixture()
def tiny(tmp_path: Path):  # noqa: ANN201
    d = tmp_path / "dict"
    d.mkdir()
    (d / "data.verb").write_text(DATA_VERB)
    (d / "index.verb").write_text(INDEX_VERB)
    (d / "LICENSE.txt").write_text("WordNet test licence\n")
    return load_motion_lexicon(str(build_motion_lexicon(d, tmp_path / "lex.json")))


def test_build_keeps_first_motion_sense_and_hypernyms(tiny) -> None:  # noqa: ANN001
    assert set(tiny.lemmas) == {"amble", "mosey", "plod", "ramble", "roam", "run", "scamper", "scurry", "swim", "travel",
                                "walk"}  # "talk" has no motion sense; multi-word lemmas are left out
    assert tiny.synsets[tiny.lemmas["ramble"]][0] == ("roam", "ramble")  # its motion sense, not the talking one
    assert tiny.synsets[tiny.lemmas["plod"]][0] == ("plod",)
    assert tiny.nearest("amble", HEADS) == "walk" and tiny.nearest("scamper", HEADS) == "run"
    assert tiny.nearest("ramble", HEADS) is None and tiny.nearest("swim", HEADS) is None


def test_inflections_are_undone(tiny) -> None:  # noqa: ANN001
    assert [tiny.lemma(w) for w in ("ambles", "ambled", "ambling", "plodding", "scurries", "scurrying", "talking")] == \
        ["amble", "amble", "amble", "plod", "scurry", "scurry", None]


def test_rewrite(tiny) -> None:  # noqa: ANN001
    known = {"along", "forward", "walk", "run"}
    assert rewrite("Amble along", known, HEADS, lexicon=tiny)[0] == "walk along"
    text, subs = rewrite("scurrying forward", known, HEADS, lexicon=tiny)
    assert text == "running forward"
    assert [(s.word, s.lemma, s.head, s.form) for s in subs] == [("scurrying", "scurry", "run", "running")]
    assert rewrite("swim, ramble", known, HEADS, lexicon=tiny) == ("swim, ramble", [])  # no head above them
    assert rewrite("amble", known | {"amble"}, HEADS, lexicon=tiny) == ("amble", [])  # a caption word stays
    assert rewrite("walks", known, HEADS, lexicon=tiny) == ("walks", [])  # an inflection of a head verb stays
    assert rewrite("ambling", known | {"amble"}, HEADS, lexicon=tiny)[0] == "walking"  # of another caption word not


@pytest.mark.parametrize("text, read, dropped", [
    ("the agent is running", "running", "the agent is"), ("The Walker runs forward", "runs forward", "The Walker"),
    ("it walks", "walks", "it"), ("a person standing", "standing", "a person"),
    ("the robot does a backflip", "does a backflip", "the robot"), ("the stick  figure will walk", "walk",
                                                                    "the stick figure will"),
    ("robot", "robot", None), ("the robot is", "the robot is", None),  # nothing would be left: unchanged
    ("walk like a robot", "walk like a robot", None), ("stand on your feet", "stand on your feet", None),
    ("itself", "itself", None), ("heave", "heave", None)])  # a subject word must be a whole word
def test_a_leading_subject_is_left_out(text: str, read: str, dropped: str | None) -> None:
    out, sub = drop_subject(text)
    assert out == read and (sub.word if sub else None) == dropped
    if sub is not None:
        assert sub.kind == "subject" and sub.explain() == f"the subject {dropped!r} left out"


def test_rewrite_leaves_out_the_subject_then_reads_rare_verbs(tiny) -> None:  # noqa: ANN001
    text, subs = rewrite("the robot ambles along", {"along"}, HEADS, lexicon=tiny)
    assert text == "walk along" and [s.kind for s in subs] == ["subject", "wordnet"]
    assert subs[1].explain() == "WordNet puts 'amble' under 'walk'"


def test_shipped_lexicon() -> None:
    lex = load_motion_lexicon()
    heads = {"walk": "walking", "stroll": "stroll", "run": "running", "race": "race", "hurry": "hurry"}
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in Path(
        "genrl_gym/vlm/motion_verbs.json").read_text()
    assert rewrite("amble along", set(), heads, lexicon=lex)[0] == "walk along"
    assert rewrite("saunter", set(), heads, lexicon=lex)[0] == "stroll"  # same synset as a head
    assert rewrite("lope", set(), heads, lexicon=lex)[0] == "run"
    for other in ("swim", "fly", "jump", "dance", "bow"):  # motion verbs under "travel" / "move": not rewritten
        assert rewrite(other, set(), heads, lexicon=lex) == (other, [])


def test_a_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a motion-verb lexicon.*genrl_gym.vlm.lexicon"):
        load_motion_lexicon(str(bad))
