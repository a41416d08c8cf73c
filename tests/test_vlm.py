"""genrl_gym.vlm: protocol, identity, load_vlm, the video-only default and the open_clip backend (tiny, offline)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import genrl_gym  # noqa: F401  (render guard first)
import numpy as np
import pytest
import torch

from genrl_gym.vlm.embed import windows
from genrl_gym.utils import VLMError
from genrl_gym.vlm import VLM, VLMIdentity, backends, load_vlm, register_backend
from genrl_gym.vlm.video_only import TEXT_REFUSAL, VideoOnlyVLM

TINY_ARCH = "genrl-test-tiny-clip"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def moving_square(motion: str, start: tuple[int, int], n: int = 16, size: int = 64) -> np.ndarray:
    """uint8 [n, size, size, 3]: a 10x10 orange square moving 2 px/frame over a fixed textured blue background."""
    rng = np.random.RandomState(123)
    bg = rng.rand(size, size, 1) * 40 + np.array([20.0, 40.0, 90.0])
    step = {"right": (2, 0), "left": (-2, 0), "down": (0, 2), "up": (0, -2), "still": (0, 0)}[motion]
    frames = []
    for t in range(n):
        img = bg.copy()
        x, y = start[0] + step[0] * t, start[1] + step[1] * t
        img[y:y + 10, x:x + 10] = (230, 150, 60)
        frames.append(img)
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def nn_same_motion(emb: torch.Tensor, motion: np.ndarray, variant: np.ndarray) -> float:
    """Fraction of windows whose most similar window among the *other* variant's windows has the same motion."""
    sim = (emb @ emb.T).numpy()
    other = variant[:, None] != variant[None, :]
    nn = np.where(other, sim, -np.inf).argmax(axis=1)
    return float(np.mean(motion[nn] == motion))


# ----------------------------------------------------------------------------------------------- identity & loading
def test_identity_roundtrip_and_equality() -> None:
    a = VLMIdentity("open_clip", "ViT-B-32", "laion2b_s34b_b79k", 512)
    assert VLMIdentity.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    assert a != dataclasses.replace(a, weights="sha256:0123456789abcdef")
    assert "ViT-B-32" in str(a) and "512" in str(a)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.embed_dim = 3  # type: ignore[misc]
    with pytest.raises(VLMError, match="missing keys"):
        VLMIdentity.from_dict({"backend": "open_clip", "model": "x", "weights": "y"})
    with pytest.raises(VLMError, match="unknown keys"):
        VLMIdentity.from_dict({**a.to_dict(), "extra": 1})
    with pytest.raises(VLMError):
        VLMIdentity("video-only", "m", "w", 0)
    a.check_same(a.to_dict())
    with pytest.raises(VLMError, match="VLM mismatch"):
        a.check_same(dataclasses.replace(a, model="ViT-L-14"), what="the checkpoint's embeddings")


def test_load_vlm_unknown_spec_lists_valid_forms() -> None:
    for spec in ("clip:ViT-B-32", "", "videoonly", {"model": "x"}, 3):
        with pytest.raises(VLMError) as e:
            load_vlm(spec)  # type: ignore[arg-type]
        assert "video-only" in str(e.value) and "open_clip:<arch>" in str(e.value)
    with pytest.raises(VLMError, match="needs an architecture and weights"):
        load_vlm("open_clip")
    with pytest.raises(VLMError, match="bad options"):
        load_vlm({"backend": "video-only", "no_such_option": 1})


def test_load_vlm_passthrough_dict_and_default() -> None:
    vlm = load_vlm("video-only")
    assert isinstance(vlm, VLM) and load_vlm(vlm) is vlm
    assert load_vlm(None).identity == vlm.identity
    # a recorded identity (store.json / checkpoint) reloads and is verified
    assert load_vlm(vlm.identity.to_dict()).identity == vlm.identity
    with pytest.raises(VLMError, match="do not match"):
        load_vlm({**vlm.identity.to_dict(), "weights": "seed0-000000000000"})
    with pytest.raises(VLMError, match="embed_dim"):
        load_vlm({"backend": "video-only", "embed_dim": 256})
    assert load_vlm("video-only:pixel-motion-rp-256").embed_dim == 256
    with pytest.raises(VLMError, match="unknown video-only model"):
        load_vlm("video-only:resnet")


class _ClipMeanColour:
    """A stand-in *video-native* backend (whole windows in, one vector out), to show the registry takes one."""

    window = 4
    has_language = False

    def __init__(self, model: str | None, weights: str | None, *, device: str = "cpu") -> None:
        self.identity = VLMIdentity("test-native", model or "mean-colour", weights or "none", 3)

    @property
    def embed_dim(self) -> int:
        return 3

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        raise VLMError("no language")

    def embed_video(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(frames)).float().mean(dim=(1, 2, 3)) + 1.0
        return torch.nn.functional.normalize(x, dim=-1)


def test_register_backend() -> None:
    register_backend("test-native", _ClipMeanColour, forms=("test-native:<model>",), summary="test", replace=True)
    try:
        vlm = load_vlm("test-native:mean-colour:w0")
        assert vlm.identity == VLMIdentity("test-native", "mean-colour", "w0", 3)
        assert load_vlm({"backend": "test-native"}).identity.weights == "none"
        with pytest.raises(ValueError, match="already registered"):
            register_backend("test-native", _ClipMeanColour)
        assert "test-native" in backends()
    finally:
        from genrl_gym import vlm as vlm_pkg

        vlm_pkg._BACKENDS.pop("test-native", None)


# ------------------------------------------------------------------------------------------------------ video-only
def test_video_only_shapes_norm_determinism() -> None:
    rng = np.random.RandomState(0)
    x = rng.randint(0, 256, (5, 8, 64, 64, 3), dtype=np.uint8)
    a, b = VideoOnlyVLM(), load_vlm("video-only")
    assert a.identity == b.identity and a.identity.backend == "video-only" and a.identity.model == "pixel-motion-rp-512"
    assert a.embed_dim == 512 and a.window == 8 and not a.has_language
    ea, eb = a.embed_video(x), b.embed_video(torch.from_numpy(x))
    assert ea.shape == (5, 512) and ea.dtype == torch.float32 and ea.device.type == "cpu"
    torch.testing.assert_close(ea.norm(dim=1), torch.ones(5))
    assert torch.equal(ea, eb) and torch.equal(ea, a.embed_video(x))
    # batch composition does not change a window's embedding
    torch.testing.assert_close(ea[2:3], a.embed_video(x[2:3]), atol=1e-6, rtol=0)
    # another seed is another space, and says so in its identity
    c = VideoOnlyVLM(seed=1)
    assert c.identity != a.identity and c.identity.weights.startswith("seed1-")
    assert not torch.allclose(c.embed_video(x), ea)


def test_video_only_inputs() -> None:
    vlm = VideoOnlyVLM()
    rng = np.random.RandomState(1)
    big = rng.randint(0, 256, (2, 8, 96, 80, 3), dtype=np.uint8)
    short = rng.randint(0, 256, (2, 3, 64, 64, 3), dtype=np.uint8)
    blank = np.zeros((1, 8, 64, 64, 3), np.uint8)
    for x in (big, short, blank):
        e = vlm.embed_video(x)
        assert e.shape == (x.shape[0], 512) and torch.isfinite(e).all()
        torch.testing.assert_close(e.norm(dim=1), torch.ones(x.shape[0]))
    # T != 8 is resampled to 8 on an even grid: a 1-frame input equals that frame held still for 8 frames
    one = rng.randint(0, 256, (1, 1, 64, 64, 3), dtype=np.uint8)
    torch.testing.assert_close(vlm.embed_video(one), vlm.embed_video(np.repeat(one, 8, axis=1)))
    for bad in (np.zeros((2, 8, 64, 64, 3), np.float32), np.zeros((8, 64, 64, 3), np.uint8),
                np.zeros((2, 8, 64, 64, 4), np.uint8), np.zeros((0, 8, 64, 64, 3), np.uint8), [[1, 2]]):
        with pytest.raises(VLMError):
            vlm.embed_video(bad)  # type: ignore[arg-type]


def test_video_only_refuses_text_with_instructions() -> None:
    vlm = load_vlm("video-only")
    with pytest.raises(VLMError) as e:
        vlm.embed_text(["walk"])
    msg = str(e.value)
    assert msg == TEXT_REFUSAL
    assert "no language weights" in msg and "genrl_gym.prompts.example(" in msg
    assert "genrl pipeline --domain walker --vlm open_clip:ViT-B-32:/path/to/open_clip_weights.bin" in msg


def test_video_only_sliding_equals_windows() -> None:
    vlm = VideoOnlyVLM(batch_size=7)  # odd chunking on both paths
    clip = np.concatenate([moving_square("right", (4, 20), 10), moving_square("down", (30, 2), 10)])
    slide = vlm.embed_sliding(clip)
    ref = vlm.embed_video(windows(clip, 8, pad="none"))
    assert slide.shape == (13, 512)
    torch.testing.assert_close(slide, ref, atol=1e-6, rtol=0)
    with pytest.raises(VLMError, match="at least 8 frames"):
        vlm.embed_sliding(clip[:5])


def test_video_only_discriminates_motion() -> None:
    """Windows of the same motion (square started elsewhere) are nearer than windows of another motion."""
    motions = ["right", "left", "down", "up", "still"]
    starts = {"right": [(8, 27), (16, 19)], "left": [(46, 27), (38, 19)], "down": [(27, 8), (19, 16)],
              "up": [(27, 46), (19, 38)], "still": [(27, 27), (19, 19)]}
    wins, motion, variant = [], [], []
    for m, name in enumerate(motions):
        for v, start in enumerate(starts[name]):
            w = windows(moving_square(name, start), 8, pad="none")
            wins.append(w)
            motion += [m] * len(w)
            variant += [v] * len(w)
    x, motion_a, variant_a = np.concatenate(wins), np.array(motion), np.array(variant)
    emb = load_vlm("video-only").embed_video(x)
    # 8 px apart, a few windows of another motion passing the same place can win (measured 87 of 90; raw pixels: 14)
    assert nn_same_motion(emb, motion_a, variant_a) >= 0.95
    sim = (emb @ emb.T).numpy()
    for m in range(len(motions)):  # on average over windows too, not only for the nearest one
        rows = motion_a == m
        same = sim[np.ix_(rows, (motion_a == m) & (variant_a != variant_a[rows][0]))].mean()
        for other in range(len(motions)):
            if other != m:
                assert same > sim[np.ix_(rows, motion_a == other)].mean(), (motions[m], motions[other])
    # the check has teeth: plain pixel cosine (centred 8-frame windows) fails it
    flat = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32))
    flat = torch.nn.functional.normalize(flat - flat.mean(dim=1, keepdim=True), dim=1)
    assert nn_same_motion(flat, motion_a, variant_a) < 0.8


@pytest.mark.slow
def test_video_only_discriminates_walker_motion() -> None:
    """Real walker renders: joint motions (bow, squat, walk, kick, still) at two amplitudes/speeds."""
    from genrl_gym.envs import make_pixel_env

    env = make_pixel_env("walker", "stand", seed=0)
    env.reset(seed=0)
    physics = env.unwrapped.physics
    kinds = ["still", "bow", "squat", "walk", "kick"]

    def clip(kind: str, amp: float, speed: float, n: int = 20) -> np.ndarray:
        frames = []
        for t in range(n):
            s = np.sin(2 * np.pi * speed * t / 12)
            q = np.zeros(9)  # rootz, rootx, rooty, right hip/knee/ankle, left hip/knee/ankle
            if kind == "bow":
                q[2] = 0.6 * amp * s
            elif kind == "squat":
                b = 0.5 * amp * (1 + s)
                q[[3, 6]], q[[4, 7]], q[[5, 8]], q[0] = -b, -2 * b, b, -0.4 * b
            elif kind == "walk":
                q[3], q[6], q[4], q[7] = 0.6 * amp * s, -0.6 * amp * s, -0.5 * amp * (1 + s), -0.5 * amp * (1 - s)
            elif kind == "kick":
                q[3] = -0.9 * amp * (1 + s)
            with physics.reset_context():
                physics.data.qpos[:] = q
            frames.append(env.unwrapped.render_frame())  # the env's own camera and render settings
        return np.stack(frames)

    wins, motion, variant = [], [], []
    for m, kind in enumerate(kinds):
        for v, (amp, speed) in enumerate([(1.0, 1.0), (0.8, 1.25)]):
            w = windows(clip(kind, amp, speed), 8, pad="none")
            wins.append(w)
            motion += [m] * len(w)
            variant += [v] * len(w)
    env.close()
    emb = load_vlm("video-only").embed_video(np.concatenate(wins))
    assert nn_same_motion(emb, np.array(motion), np.array(variant)) == 1.0


# ------------------------------------------------------------------------------------------------- open_clip (tiny)
@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Register a tiny open_clip architecture and save its random weights; return the weights file."""
    import open_clip

    d = tmp_path_factory.mktemp("tiny_clip")
    (d / f"{TINY_ARCH}.json").write_text(json.dumps(TINY_CFG))
    if TINY_ARCH not in open_clip.list_models():
        open_clip.add_model_config(d / f"{TINY_ARCH}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_ARCH)
    path = d / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return path


def test_open_clip_loads_local_file(tiny_clip: Path) -> None:
    from genrl_gym.vlm.open_clip_backend import OpenCLIPVLM, file_fingerprint

    vlm = load_vlm(f"open_clip:{TINY_ARCH}:{tiny_clip}")
    assert isinstance(vlm, OpenCLIPVLM) and vlm.has_language and vlm.window == 8
    assert vlm.identity == VLMIdentity("open_clip", TINY_ARCH, file_fingerprint(tiny_clip), 32)
    assert vlm.identity.weights.startswith("sha256:") and len(vlm.identity.weights) == len("sha256:") + 16
    # a second instance (dict spec) is the same model: same identity, same outputs
    again = load_vlm({"backend": "open_clip", "model": TINY_ARCH, "weights": str(tiny_clip), "batch_size": 3})
    assert again.identity == vlm.identity
    x = np.random.RandomState(0).randint(0, 256, (4, 8, 64, 64, 3), dtype=np.uint8)
    ev = vlm.embed_video(x)
    assert ev.shape == (4, 32) and ev.dtype == torch.float32
    torch.testing.assert_close(ev.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(ev, again.embed_video(x), atol=1e-5, rtol=0)  # batch_size 3 vs 32
    assert torch.equal(ev, vlm.embed_video(x))
    # documented pooling: per-frame embeddings mean-pooled, so frame order does not matter and a still window
    # equals its single frame
    torch.testing.assert_close(vlm.embed_video(x[:, ::-1].copy()), ev, atol=1e-5, rtol=0)
    torch.testing.assert_close(vlm.embed_video(np.repeat(x[:, :1], 8, axis=1)), vlm.embed_video(x[:, :1]), atol=1e-5,
                               rtol=0)


def test_open_clip_text_batching(tiny_clip: Path) -> None:
    vlm = load_vlm({"backend": "open_clip", "model": TINY_ARCH, "weights": str(tiny_clip), "text_batch_size": 2})
    texts = ["walk", "a robot running fast on the floor", "stand up", "flip"]
    batched = vlm.embed_text(texts)
    assert batched.shape == (4, 32) and batched.dtype == torch.float32
    torch.testing.assert_close(batched.norm(dim=1), torch.ones(4))
    one_by_one = torch.cat([vlm.embed_text([t]) for t in texts])
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=0)
    assert not torch.allclose(batched[0], batched[1])
    with pytest.raises(VLMError):
        vlm.embed_text("walk")  # type: ignore[arg-type]
    with pytest.raises(VLMError):
        vlm.embed_text([])


def test_open_clip_preprocess_matches_model_config(tiny_clip: Path) -> None:
    vlm = load_vlm(f"open_clip:{TINY_ARCH}:{tiny_clip}")
    frames = torch.full((2, 48, 80, 3), 255, dtype=torch.uint8)
    x = vlm.preprocess(frames)  # shortest side to 32, centre crop
    assert x.shape == (2, 3, 32, 32)
    mean, std = torch.tensor(vlm.model.visual.preprocess_cfg["mean"]), torch.tensor(vlm.model.visual.preprocess_cfg["std"])
    torch.testing.assert_close(x[0, :, 5, 5], (1 - mean) / std)


def test_open_clip_missing_unreadable_and_mismatched_weights(tiny_clip: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.bin"
    with pytest.raises(VLMError, match="not found") as e:
        load_vlm(f"open_clip:{TINY_ARCH}:{missing}")
    assert str(missing) in str(e.value)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint" * 64)
    with pytest.raises(VLMError, match="cannot read"):
        load_vlm(f"open_clip:{TINY_ARCH}:{corrupt}")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_clip.read_bytes()[: tiny_clip.stat().st_size // 2])
    with pytest.raises(VLMError, match="cannot read"):
        load_vlm(f"open_clip:{TINY_ARCH}:{truncated}")
    with pytest.raises(VLMError, match="does not fit architecture"):
        load_vlm(f"open_clip:RN50:{tiny_clip}")
    with pytest.raises(VLMError, match="unknown open_clip architecture"):
        load_vlm(f"open_clip:NoSuchArch:{tiny_clip}")
    # a recorded identity names the file by its hash: reloading it asks for the file
    recorded = load_vlm(f"open_clip:{TINY_ARCH}:{tiny_clip}").identity.to_dict()
    with pytest.raises(VLMError, match="pass the file itself"):
        load_vlm(recorded)


def test_open_clip_uncached_tag_is_an_offline_error(tmp_path: Path) -> None:
    empty_cache = tmp_path / "hub"
    empty_cache.mkdir()
    with pytest.raises(VLMError) as e:
        load_vlm({"backend": "open_clip", "model": "ViT-B-32", "weights": "laion2b_s34b_b79k", "cache_dir": str(empty_cache)})
    msg = str(e.value)
    assert "laion2b_s34b_b79k" in msg and "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in msg  # what was looked for
    assert str(empty_cache) in msg  # where
    assert "allow_download=True" in msg and "/path/to/" in msg  # how to provide it
    with pytest.raises(VLMError, match="neither a weights file nor a pretrained tag"):
        load_vlm({"backend": "open_clip", "model": "ViT-B-32", "weights": "no_such_tag", "cache_dir": str(empty_cache)})


def test_open_clip_tag_resolves_from_hub_cache_only(tmp_path: Path) -> None:
    """A file laid out as the hub cache stores it is found without any network access."""
    from genrl_gym.vlm.open_clip_backend import resolve_pretrained

    repo = tmp_path / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    rev = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    (snap / "open_clip_pytorch_model.bin").write_bytes(b"x")
    path, cfg = resolve_pretrained("ViT-B-32", "laion2b_s34b_b79k", cache_dir=tmp_path)
    assert path == snap / "open_clip_pytorch_model.bin" and "mean" in cfg


def test_open_clip_sliding_equals_windows(tiny_clip: Path) -> None:
    from genrl_gym.vlm.open_clip_backend import OpenCLIPVLM

    vlm = load_vlm({"backend": "open_clip", "model": TINY_ARCH, "weights": str(tiny_clip), "batch_size": 2})
    clip = moving_square("right", (4, 20), 13)
    slide = vlm.embed_sliding(clip)
    assert slide.shape == (6, 32)
    torch.testing.assert_close(slide, vlm.embed_video(windows(clip, 8, pad="none")), atol=1e-5, rtol=0)
    # wrapping an already built model gives the same embeddings under the label it is given
    wrapped = OpenCLIPVLM.from_model(vlm.model, TINY_ARCH, "my-label")
    assert wrapped.identity == VLMIdentity("open_clip", TINY_ARCH, "my-label", 32)
    torch.testing.assert_close(wrapped.embed_video(clip[None, :8]), slide[:1], atol=1e-5, rtol=0)
