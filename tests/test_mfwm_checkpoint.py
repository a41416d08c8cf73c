"""MFWM save/load: one file, exact fp32 round trip, fp16 storage, atomic writes and every error path."""

from __future__ import annotations

import genrl_gym  # noqa: F401  (render guard first)

import json
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from genrl_gym.models import MFWM, CheckpointNotFoundError, preset
from genrl_gym.models.mfwm import FORMAT_VERSION
from genrl_gym.utils import CheckpointError
from genrl_gym.vlm import VLMIdentity, load_vlm

VLM_ID = {"backend": "video-only", "model": "pixel-motion-rp-16", "weights": "seed0-test", "embed_dim": 16}
RENDER = {"image_size": 64, "camera_id": 0, "render_quality": "fast"}


def make_model(seed: int = 0) -> MFWM:
    torch.manual_seed(seed)
    m = MFWM(preset("tiny", embed_dim=16, action_dim=3), domain="walker", vlm_identity=VLM_ID, render_settings=RENDER,
             metadata={"note": "test", "steps": 3})
    with torch.no_grad():  # move every parameter away from its initial value (LayerNorm weights are all ones)
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return m


def outputs(m: MFWM) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 8, 64, 64, 3), dtype=torch.uint8, generator=g)
    actions = torch.rand(2, 8, 3, generator=g)
    is_first = torch.zeros(2, 8, dtype=torch.bool)
    e = F.normalize(torch.randn(2, 6, 16, generator=g), dim=-1)
    with torch.no_grad():
        post, prior = m.observe(images, actions, is_first, sample=False)
        conn = m.connector_rollout(e, align=True, generator=torch.Generator().manual_seed(1))
        return {"post": post.logits, "prior": prior.logits, "decode": m.decode(post.stoch),
                "features": m.reward_features(post.stoch), "conn": conn.logits, "align": m.align(e)}


def test_round_trip_fp32_exact(tmp_path: Path) -> None:
    m = make_model()
    path = m.save(tmp_path / "walker.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walker.pt"]  # one file, no temp left over
    m2 = MFWM.load(path)
    for k, v in outputs(m).items():
        assert torch.equal(v, outputs(m2)[k]), k
    assert m2.config == m.config and m2.domain == "walker" and m2.render_settings == RENDER
    assert m2.metadata == {"note": "test", "steps": 3}
    assert m2.vlm_identity == VLMIdentity.from_dict(VLM_ID)
    assert all(p.dtype == torch.float32 for p in m2.parameters())


def test_round_trip_fp16_close_and_smaller(tmp_path: Path) -> None:
    m = make_model()
    full, half = m.save(tmp_path / "full.pt"), m.save(tmp_path / "half.pt", half=True)
    assert half.stat().st_size < 0.7 * full.stat().st_size
    m2 = MFWM.load(half)
    assert all(p.dtype == torch.float32 for p in m2.parameters())
    a, b = outputs(m), outputs(m2)
    torch.testing.assert_close(b["decode"], a["decode"], atol=2e-2, rtol=0)
    torch.testing.assert_close(b["features"], a["features"], atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(b["align"], a["align"], atol=1e-2, rtol=0)


def test_save_overwrites_atomically(tmp_path: Path) -> None:
    path = make_model(0).save(tmp_path / "m.pt")
    make_model(1).save(path)
    assert torch.equal(outputs(MFWM.load(path))["post"], outputs(make_model(1))["post"])
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="no such MFWM checkpoint") as e:
        MFWM.load(tmp_path / "nope.pt")
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, CheckpointError)


def test_truncated_file(tmp_path: Path) -> None:
    path = make_model().save(tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"m\.pt: truncated or corrupt MFWM checkpoint .*re-download"):
        MFWM.load(path)


def test_corrupt_weights_detected(tmp_path: Path) -> None:
    path = make_model().save(tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    key = next(k for k in payload["state_dict"] if k.endswith("decoder.linear.weight"))
    payload["state_dict"][key][0, 0] += 1.0  # a flipped value, sha256 left as it was
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="corrupt MFWM checkpoint.*SHA-256"):
        MFWM.load(path)


def test_foreign_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a genrl-gym MFWM checkpoint"):
        MFWM.load(text)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(CheckpointError, match="not a genrl-gym MFWM checkpoint .*format tag"):
        MFWM.load(other)
    pickled = tmp_path / "agent.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)  # like the original GenRL checkpoints: a pickled object
    with pytest.raises(CheckpointError, match="pickles Python objects"):
        MFWM.load(pickled)
    zipped = tmp_path / "z.pt"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("x.txt", "not torch")
    with pytest.raises(CheckpointError, match="z.pt: not a genrl-gym MFWM checkpoint .*not a torch archive"):
        MFWM.load(zipped)


def test_newer_format_version_refused(tmp_path: Path) -> None:
    path = make_model().save(tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="newer"):
        MFWM.load(path)


def test_expect_domain_and_vlm(tmp_path: Path) -> None:
    path = make_model().save(tmp_path / "m.pt")
    assert MFWM.load(path, expect_domain="walker", expect_vlm=VLM_ID).domain == "walker"
    assert MFWM.load(path, expect_vlm=VLMIdentity.from_dict(VLM_ID)).domain == "walker"
    with pytest.raises(CheckpointError, match="trained on domain 'walker' but domain 'cheetah' was asked"):
        MFWM.load(path, expect_domain="cheetah")
    other = load_vlm("video-only")  # the real default VLM: another identity (512-d)
    with pytest.raises(CheckpointError, match=r"trained with VLM video-only:pixel-motion-rp-16 .* but video-only:"
                                              r"pixel-motion-rp-512"):
        MFWM.load(path, expect_vlm=other)


def test_checkpoint_is_one_self_describing_file(tmp_path: Path) -> None:
    path = make_model().save(tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)  # loadable without unpickling code
    assert payload["format"] == "genrl_gym.mfwm" and payload["version"] == FORMAT_VERSION
    assert json.loads(payload["config"])["world_model"]["deter"] == 32
    info = json.loads(payload["info"])
    assert info["domain"] == "walker" and info["vlm"] == VLM_ID and info["render_settings"] == RENDER


def test_vlm_embed_dim_must_match_config() -> None:
    with pytest.raises(ValueError, match="embeds in 512 dims"):
        MFWM(preset("tiny", embed_dim=16, action_dim=3), vlm_identity=load_vlm("video-only"))


def test_a_writer_killed_mid_save_leaves_the_old_file_and_the_next_save_cleans_up(tmp_path: Path) -> None:
    from helpers import killed_mid_torch_save

    path = make_model(0).save(tmp_path / "m.pt")
    before = path.read_bytes()
    assert killed_mid_torch_save(lambda: make_model(1).save(path)) == 9
    assert path.read_bytes() == before  # not a byte changed
    assert torch.equal(outputs(MFWM.load(path))["post"], outputs(make_model(0))["post"])
    stale = [p.name for p in tmp_path.iterdir() if p.name != "m.pt"]
    assert len(stale) == 1 and stale[0].startswith(".m.pt.") and stale[0].endswith(".tmp")  # hidden; its writer is dead
    make_model(1).save(path)  # the next successful write removes the dead writer's temp file
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    assert torch.equal(outputs(MFWM.load(path))["post"], outputs(make_model(1))["post"])
