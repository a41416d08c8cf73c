"""Prompts -> target trajectories with real VLM backends: a tiny random-weight open_clip (text-capable) and the offline
video-only default; video prompts from real walker frames written to GIF/MP4."""

from __future__ import annotations

import genrl_gym  # noqa: F401  (render guard first)

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrl_gym.envs import make_pixel_env
from genrl_gym.models import MFWM, preset
from genrl_gym.prompts import (MAX_PROMPT_CHARS, TargetTrajectory, clear_cache, decode_target, embed_video_prompt, example,
                               list_examples, read_video, target_from_prompt, video_prompt_frames, write_video)
from genrl_gym.utils import PromptError
from genrl_gym.vlm import load_vlm

ARCH = "genrl-test-prompts-clip"  # distinct from test_vlm.py: open_clip configs are process-global


@pytest.fixture(scope="module")
def clip_vlm(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A real open_clip VLM (text + image towers) of a tiny architecture with random weights saved to a file."""
    import open_clip

    d = tmp_path_factory.mktemp("clip")
    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
    (d / f"{ARCH}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d)
    torch.manual_seed(0)
    torch.save(open_clip.create_model(ARCH).state_dict(), d / "weights.bin")
    return load_vlm(f"open_clip:{ARCH}:{d / 'weights.bin'}")


@pytest.fixture(scope="module")
def video_vlm():  # noqa: ANN201
    return load_vlm("video-only")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """20 real walker frames uint8 [20, 64, 64, 3] under random actions."""
    env = make_pixel_env("walker", "walk", episode_frames=80, seed=0)
    obs, _ = env.reset(seed=0)
    out = [obs["image"]]
    rng = np.random.default_rng(0)
    for _ in range(19):
        obs, *_ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        out.append(obs["image"])
    env.close()
    return np.stack(out)


def model_for(vlm, seed: int = 0) -> MFWM:  # noqa: ANN001
    torch.manual_seed(seed)
    return MFWM(preset("tiny", embed_dim=vlm.embed_dim, action_dim=6), domain="walker", vlm_identity=vlm.identity)


def test_text_prompt_target(clip_vlm) -> None:  # noqa: ANN001
    model = model_for(clip_vlm)
    t = target_from_prompt(model, "walk fast clean", vlm=clip_vlm, horizon=16)
    assert isinstance(t, TargetTrajectory) and t.kind == "text" and t.aligned and t.prompt == "walk fast clean"
    assert t.stoch.shape == (17, 16) and t.features.shape == (17, 128) and t.logits.shape == (17, 4, 4)
    assert len(t) == 17 and t.horizon == 16 and not t.stoch.requires_grad
    assert t.embedding.shape == (32,) and float(t.embedding.norm()) == pytest.approx(1.0, abs=1e-5)
    # by hand: aligner -> connector rollout of horizon + 2 steps on modes (seeded initial stoch) -> drop the first
    e = F.normalize(clip_vlm.embed_text(["walk fast clean"]), dim=-1)[0]
    torch.testing.assert_close(t.embedding, e)
    with torch.no_grad():
        s = model.connector_rollout(e[None, None].expand(1, 18, 32), align=True,
                                    generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(t.stoch, s.stoch[0, 1:])
    torch.testing.assert_close(t.features, model.reward_features(s.stoch[0, 1:]).detach())
    # cache: same object; other horizon/alignment: another target
    assert target_from_prompt(model, "walk  fast clean", vlm=clip_vlm, horizon=16) is t  # whitespace-normalised
    assert len(target_from_prompt(model, "walk fast clean", vlm=clip_vlm, horizon=8)) == 9
    assert not target_from_prompt(model, "walk fast clean", vlm=clip_vlm, align=False).aligned
    clear_cache(model)
    assert target_from_prompt(model, "walk fast clean", vlm=clip_vlm) is not t
    assert target_from_prompt(model, "walk fast clean", vlm=clip_vlm).stoch.shape == (17, 16)


def test_text_prompt_errors(clip_vlm, video_vlm) -> None:  # noqa: ANN001
    model = model_for(clip_vlm)
    with pytest.raises(PromptError, match="empty text prompt"):
        target_from_prompt(model, "   ", vlm=clip_vlm)
    with pytest.raises(PromptError, match=f"longer than {MAX_PROMPT_CHARS}"):
        target_from_prompt(model, "run " * 100, vlm=clip_vlm)
    with pytest.raises(PromptError, match="not the VLM this model was trained with"):
        target_from_prompt(model, "run", vlm=video_vlm)
    with pytest.raises(PromptError, match="horizon"):
        target_from_prompt(model, "run", vlm=clip_vlm, horizon=0)
    video_model = model_for(video_vlm)
    with pytest.raises(PromptError, match="no language weights"):
        target_from_prompt(video_model, "run fast", vlm=video_vlm)
    with pytest.raises(PromptError, match="no language weights") as refused:
        target_from_prompt(video_model, "run fast")  # vlm=None loads the model's own (video-only) VLM
    assert "genrl pipeline" in str(refused.value) and "--vlm open_clip:" in str(refused.value)  # says how to fix it
    with pytest.raises(PromptError, match="records no VLM"):
        target_from_prompt(MFWM(preset("tiny", embed_dim=32, action_dim=6)), "run")
    with pytest.raises(PromptError, match="a prompt is text"):
        target_from_prompt(model, 3.5, vlm=clip_vlm)  # type: ignore[arg-type]


def test_video_prompt_files_and_arrays(video_vlm, frames: np.ndarray, tmp_path: Path) -> None:  # noqa: ANN001
    model = model_for(video_vlm)
    from_array = target_from_prompt(model, frames, vlm=video_vlm)
    assert from_array.kind == "video" and not from_array.aligned and from_array.stoch.shape == (17, 16)
    assert from_array.prompt == "<video array (20, 64, 64, 3)>"
    torch.testing.assert_close(from_array.embedding, embed_video_prompt(video_vlm, frames), atol=1e-5, rtol=1e-4)
    gif, mp4 = write_video(frames, tmp_path / "clip.gif"), write_video(frames, tmp_path / "clip.mp4")
    for path in (gif, str(mp4)):
        t = target_from_prompt(model, path)  # vlm=None: the model's own VLM, loaded by identity
        assert t.kind == "video" and t.stoch.shape == (17, 16)
        assert float(t.embedding @ from_array.embedding) > 0.95  # lossy encodings embed close to the frames
    assert target_from_prompt(model, frames, vlm=video_vlm, align=True).aligned
    big = np.repeat(np.repeat(frames, 2, 1), 2, 2)  # 128x128 frames are resized to the model's 64x64
    assert float(target_from_prompt(model, big, vlm=video_vlm).embedding @ from_array.embedding) > 0.99


def test_video_prompt_frames_rule() -> None:
    clip = (np.arange(300) % 256).astype(np.uint8)[:, None, None, None] * np.ones((1, 64, 64, 3), np.uint8)
    strided = video_prompt_frames(clip)
    assert len(strided) == 150 and strided[:8, 0, 0, 0].tolist() == [0, 2, 4, 6, 8, 10, 12, 14]  # stride 300 // 128
    assert video_prompt_frames(clip[:100])[:, 0, 0, 0].tolist() == list(range(100))  # stride 1: every frame
    wide = np.zeros((10, 96, 128, 3), np.uint8)
    assert video_prompt_frames(wide).shape == (10, 64, 64, 3)


class _WindowsOnly:
    """A VLM with embed_video only (no embed_sliding): the prompt embedding must come out the same."""

    def __init__(self, vlm) -> None:  # noqa: ANN001
        self.vlm, self.window = vlm, vlm.window

    def embed_video(self, x: np.ndarray) -> torch.Tensor:
        return self.vlm.embed_video(x)


def test_video_prompt_embedding_is_the_mean_over_every_window(video_vlm, frames: np.ndarray) -> None:  # noqa: ANN001
    windows = np.stack([frames[s:s + 8] for s in range(len(frames) - 7)])  # 13 windows of the 20 frames
    expected = F.normalize(F.normalize(video_vlm.embed_video(windows), dim=-1).mean(0), dim=0)
    got = embed_video_prompt(video_vlm, frames)
    assert got.shape == expected.shape and float(got @ expected) > 0.9999
    assert float(embed_video_prompt(_WindowsOnly(video_vlm), frames) @ expected) > 0.9999
    one = embed_video_prompt(video_vlm, frames[:8])  # a one-window clip embeds as that window
    assert float(one @ F.normalize(video_vlm.embed_video(frames[None, :8])[0], dim=0)) > 0.9999


def test_a_periodic_video_prompt_embeds_the_same_from_any_phase(video_vlm) -> None:  # noqa: ANN001
    # a gait-like clip: a bar sweeping across the frame with period 12; clips of 3 periods + 7 frames starting at
    # different phases hold the same set of windows, so their embeddings agree though their first windows differ
    period, n = 12, 3 * 12 + 7
    cycle = np.zeros((period, 64, 64, 3), np.uint8)
    for t in range(period):
        cycle[t, :, 4 * t:4 * t + 12] = 255
    clips = [np.concatenate([cycle] * 5)[p:p + n] for p in (0, 5)]
    a, b = (embed_video_prompt(video_vlm, c) for c in clips)
    first = [F.normalize(video_vlm.embed_video(c[None, :8])[0], dim=0) for c in clips]
    assert float(a @ b) > 0.9999
    assert float(first[0] @ first[1]) < float(a @ b) - 0.01  # one window sees one phase only


def test_video_prompt_errors(video_vlm, frames: np.ndarray, tmp_path: Path) -> None:  # noqa: ANN001
    model = model_for(video_vlm)
    with pytest.raises(PromptError, match="5 frames; at least 8"):
        target_from_prompt(model, frames[:5], vlm=video_vlm)
    write_video(frames[:5], tmp_path / "short.gif")
    with pytest.raises(PromptError, match="at least 8"):
        target_from_prompt(model, tmp_path / "short.gif", vlm=video_vlm)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(PromptError, match="broken.mp4: cannot be read as a video"):
        target_from_prompt(model, bad, vlm=video_vlm)
    with pytest.raises(PromptError, match="no such file"):
        target_from_prompt(model, str(tmp_path / "missing.webm"), vlm=video_vlm)
    with pytest.raises(PromptError, match="uint8"):
        target_from_prompt(model, frames.astype(np.float32), vlm=video_vlm)


def test_decode_and_write_video(video_vlm, frames: np.ndarray, tmp_path: Path) -> None:  # noqa: ANN001
    model = model_for(video_vlm)
    target = target_from_prompt(model, frames, vlm=video_vlm, horizon=7)
    video = decode_target(model, target)
    assert video.shape == (8, 64, 64, 3) and video.dtype == np.uint8
    for name in ("target.gif", "target.mp4"):
        path = write_video(video, tmp_path / name)
        back = read_video(path)  # GIF: merged identical frames are expanded again
        assert back.shape == (8, 64, 64, 3)
    if len(np.unique(video.reshape(8, -1), axis=0)) < 8:  # Pillow merges identical frames: plain readers see fewer
        assert iio.imread(tmp_path / "target.gif", index=None).shape[0] < 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target.gif", "target.mp4"]  # no temp files left
    with pytest.raises(ValueError, match="unsupported video format"):
        write_video(video, tmp_path / "x.avi")


def test_shipped_examples_lookup() -> None:
    clips = list_examples()
    assert isinstance(clips, dict)
    for (domain, task), path in clips.items():
        assert example(domain, task) == path and path.is_file()
        assert list_examples(domain)[(domain, task)] == path
    with pytest.raises(PromptError, match="no shipped prompt clip for nodomain/notask"):
        example("nodomain", "notask")


def test_image_prompts_are_the_frame_repeated_over_one_vlm_window(video_vlm, frames: np.ndarray,  # noqa: ANN001
                                                                  tmp_path: Path) -> None:
    model = model_for(video_vlm)
    image = frames[5]
    t = target_from_prompt(model, image, vlm=video_vlm)
    assert t.kind == "image" and not t.aligned and t.prompt == "<image array (64, 64, 3)>"
    assert t.stoch.shape == (17, 16)
    # by hand: one VLM window of 8 copies of the frame (not 64 grey frames 3 pixels wide)
    still = video_vlm.embed_video(np.repeat(image[None], 8, 0)[None])[0]
    torch.testing.assert_close(t.embedding, F.normalize(still, dim=-1))
    assert not torch.allclose(t.embedding, target_from_prompt(model, frames, vlm=video_vlm).embedding)
    iio.imwrite(tmp_path / "pose.png", image)
    from_png = target_from_prompt(model, tmp_path / "pose.png")  # vlm=None: the model's own VLM
    assert from_png.kind == "image" and torch.equal(from_png.embedding, t.embedding)  # png is lossless
    assert target_from_prompt(model, str(tmp_path / "pose.png")).kind == "image"
    rgba = np.concatenate([image, np.full((64, 64, 1), 255, np.uint8)], -1)
    assert torch.equal(target_from_prompt(model, rgba, vlm=video_vlm).embedding, t.embedding)  # alpha dropped
    assert target_from_prompt(model, image[..., 0], vlm=video_vlm).kind == "image"  # grey [H, W]
    big = np.repeat(np.repeat(image, 2, 0), 2, 1)  # resized to the model's 64x64 like video frames
    assert float(target_from_prompt(model, big, vlm=video_vlm).embedding @ t.embedding) > 0.99
    iio.imwrite(tmp_path / "pose.jpg", image)
    assert float(target_from_prompt(model, tmp_path / "pose.jpg").embedding @ t.embedding) > 0.95


def test_image_prompt_errors_and_ambiguous_arrays(video_vlm, frames: np.ndarray, tmp_path: Path) -> None:  # noqa: ANN001
    model = model_for(video_vlm)
    for shape in [(3, 64, 64), (4, 64, 64), (3, 64, 3), (1, 8, 1)]:  # channel-first image? 1-4 grey frames?
        with pytest.raises(PromptError, match=rf"shape \({shape[0]}, .* is ambiguous.*\[H, W, 3\]"):
            target_from_prompt(model, np.zeros(shape, np.uint8), vlm=video_vlm)
    grey_video = frames[..., 0]  # [20, 64, 64]: no axis is a channel count, read as grey frames
    assert target_from_prompt(model, grey_video, vlm=video_vlm).kind == "video"
    with pytest.raises(PromptError, match="image prompt .*missing.png: no such file"):
        target_from_prompt(model, str(tmp_path / "missing.png"), vlm=video_vlm)
    (tmp_path / "broken.png").write_bytes(b"not a png" * 10)
    with pytest.raises(PromptError, match="broken.png: cannot be read as an image"):
        target_from_prompt(model, tmp_path / "broken.png", vlm=video_vlm)
    with pytest.raises(PromptError, match="uint8"):
        target_from_prompt(model, frames[0].astype(np.float32), vlm=video_vlm)
    with pytest.raises(PromptError, match="1 frames; at least 8 .* image prompt"):
        target_from_prompt(model, frames[:1], vlm=video_vlm)
