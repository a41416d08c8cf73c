"""GenRLAgent.save / GenRLAgent.load: exact round trip (deterministic actions, networks, optimisers, normaliser,
target, counters), model storage modes, and clear errors for missing, truncated and foreign files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import genrl_gym  # noqa: F401
from genrl_gym.agents import GenRLAgent
from genrl_gym.models import MFWM, preset
from genrl_gym.utils import CheckpointError
from genrl_gym.vlm import load_vlm

ACTION_DIM = 6


@pytest.fixture(scope="module")
def vlm():
    return load_vlm("video-only")


@pytest.fixture(scope="module")
def model(vlm) -> MFWM:
    torch.manual_seed(0)
    return MFWM(preset("tiny", action_dim=ACTION_DIM, embed_dim=vlm.embed_dim), domain="walker", vlm_identity=vlm.identity)


@pytest.fixture(scope="module")
def prompt() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def trained(model, prompt, vlm) -> GenRLAgent:
    agent = GenRLAgent(model, prompt, vlm=vlm, preset="tiny", seed=0)
    agent.learn(3, log_interval=0)
    return agent


def _rollout(agent: GenRLAgent, steps: int = 4) -> np.ndarray:
    """Deterministic recurrent actions on a fixed batch of 2 frame sequences -> [steps, 2, A]."""
    frames = np.random.default_rng(7).integers(0, 256, (steps, 2, 64, 64, 3), dtype=np.uint8)
    state, out = None, []
    for t in range(steps):
        a, state = agent.predict({"image": frames[t]}, state=state, episode_start=np.full(2, t == 0), deterministic=True)
        out.append(a)
    return np.stack(out)


def _state_dicts_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_is_exact(trained: GenRLAgent, tmp_path: Path) -> None:
    path = trained.save(tmp_path / "agent")
    assert path == tmp_path / "agent.zip" and path.is_file()
    names = set(zipfile.ZipFile(path).namelist())
    assert {"data", "policy.pth", "actor_optimizer.pth", "critic_optimizer.pth", "genrl_agent.json", "mfwm.pt"} <= names
    loaded = GenRLAgent.load(tmp_path / "agent")  # suffix optional, as SB3
    np.testing.assert_array_equal(_rollout(loaded), _rollout(trained))
    assert _state_dicts_equal(loaded.policy, trained.policy)  # actor, critic, slow critic, return EMA, target
    assert _state_dicts_equal(loaded.world_model, trained.world_model)
    assert loaded._n_updates == trained._n_updates == 3 and loaded.num_timesteps == 3
    assert loaded.config == trained.config and loaded.prompt_text == trained.prompt_text
    assert not any(p.requires_grad for p in loaded.world_model.parameters())
    for name in ("actor_optimizer", "critic_optimizer"):
        sa, sb = getattr(loaded, name).state_dict(), getattr(trained, name).state_dict()
        assert sa["param_groups"] == sb["param_groups"]
        for k in sa["state"]:
            for key in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(sa["state"][k][key], sb["state"][k][key])


def test_training_continues_identically_after_load(trained: GenRLAgent, tmp_path: Path) -> None:
    """Same RNG seed + restored optimiser/normaliser/slow-critic/counters -> bit-identical next update."""
    path = trained.save(tmp_path / "a.zip")
    loaded = GenRLAgent.load(path)
    original = GenRLAgent.load(path)  # a copy of `trained`, so the module-scoped fixture stays untouched
    torch.manual_seed(123)
    original.learn(1, reset_num_timesteps=False, log_interval=0)
    torch.manual_seed(123)
    loaded.learn(1, reset_num_timesteps=False, log_interval=0)
    assert _state_dicts_equal(loaded.policy, original.policy)
    assert loaded._n_updates == 4


def test_fp16_embedding_and_reference(trained: GenRLAgent, model: MFWM, prompt, vlm, tmp_path: Path) -> None:
    full = trained.save(tmp_path / "full.zip")
    half = trained.save(tmp_path / "half.zip", model_storage="embed_fp16")
    assert half.stat().st_size < full.stat().st_size
    loaded = GenRLAgent.load(half)
    np.testing.assert_allclose(_rollout(loaded), _rollout(trained), atol=0.05)
    with pytest.raises(ValueError, match="reference"):
        trained.save(tmp_path / "ref.zip", model_storage="reference")  # built from an object, not a path
    ckpt = model.save(tmp_path / "walker.pt")
    agent = GenRLAgent(str(ckpt), prompt, vlm=vlm, preset="tiny", seed=0)
    assert agent.model_source == str(ckpt.resolve())
    ref = agent.save(tmp_path / "ref.zip", model_storage="reference")
    assert "mfwm.pt" not in zipfile.ZipFile(ref).namelist() and ref.stat().st_size < full.stat().st_size
    np.testing.assert_array_equal(_rollout(GenRLAgent.load(ref)), _rollout(agent))
    # a replacement model can be given at load time
    np.testing.assert_array_equal(_rollout(GenRLAgent.load(ref, model=model)), _rollout(agent))


def test_load_errors(trained: GenRLAgent, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        GenRLAgent.load(tmp_path / "missing.zip")
    path = trained.save(tmp_path / "agent.zip")
    data = path.read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        GenRLAgent.load(tmp_path / "cut.zip")
    with zipfile.ZipFile(tmp_path / "foreign.zip", "w") as z:
        z.writestr("data", "{}")
    with pytest.raises(CheckpointError, match="not a GenRLAgent"):
        GenRLAgent.load(tmp_path / "foreign.zip")
    (tmp_path / "text.zip").write_text("hello")
    with pytest.raises(CheckpointError):
        GenRLAgent.load(tmp_path / "text.zip")


def test_save_is_atomic(trained: GenRLAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure mid-save leaves the previous file intact and no temporary file behind."""
    path = trained.save(tmp_path / "agent.zip")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(trained.world_model, "to_payload", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        trained.save(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["agent.zip"]


def test_phase_alignment_keeps_a_longer_target_through_save_and_load(model, prompt, vlm, tmp_path: Path) -> None:
    from genrl_gym.reward import target_horizon

    agent = GenRLAgent(model, prompt, vlm=vlm, preset="tiny", seed=0, align="phase")
    steps = target_horizon("phase", agent.config.horizon + 1) + 1
    assert agent.policy.target_features.shape[0] == steps > agent.config.horizon + 1
    agent.learn(2, log_interval=0)
    agent.save(tmp_path / "phase.zip")
    loaded = GenRLAgent.load(tmp_path / "phase.zip")
    assert loaded.align == "phase" and torch.equal(loaded.policy.target_features, agent.policy.target_features)
    with pytest.raises(ValueError, match="align='dtw'"):
        GenRLAgent(model, prompt, vlm=vlm, preset="tiny", align="dtw")


def _header(path: Path) -> dict:
    import json

    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("genrl_agent.json"))


def _rewrite_header(path: Path, header: dict) -> None:
    """Rewrite the zip with another genrl_agent.json (as an agent saved by an earlier version would have it)."""
    import json

    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    entries["genrl_agent.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)


def test_load_refuses_a_world_model_other_than_the_agents(model: MFWM, prompt, vlm, tmp_path: Path) -> None:
    ckpt = model.save(tmp_path / "walker.pt")
    agent = GenRLAgent(str(ckpt), prompt, vlm=vlm, preset="tiny", seed=0)
    ref = agent.save(tmp_path / "ref.zip", model_storage="reference")
    recorded = _header(ref)["world_model"]
    assert recorded == {"sha256": model.weights_sha256(), "domain": "walker", "vlm": vlm.identity.to_dict()}
    assert recorded["sha256"] == torch.load(ckpt, weights_only=True)["sha256"]  # the checkpoint's own digest
    # cheetah has 6 actions too: before the check a walker agent drove a cheetah model without a word
    torch.manual_seed(1)
    cheetah = MFWM(preset("tiny", action_dim=ACTION_DIM, embed_dim=vlm.embed_dim), domain="cheetah",
                   vlm_identity=vlm.identity)
    with pytest.raises(CheckpointError, match="trained on a 'walker' world model but the model given is of domain "
                                              "'cheetah'"):
        GenRLAgent.load(ref, model=cheetah)
    with pytest.raises(CheckpointError, match="'walker'"):
        GenRLAgent.load(ref, model=cheetah, allow_model_mismatch=True)  # another domain is never allowed
    # a retrained walker model (same domain and VLM, other weights)
    torch.manual_seed(2)
    retrained = MFWM(preset("tiny", action_dim=ACTION_DIM, embed_dim=vlm.embed_dim), domain="walker",
                     vlm_identity=vlm.identity)
    with pytest.raises(CheckpointError, match="not the one this agent was trained with .*allow_model_mismatch=True"):
        GenRLAgent.load(ref, model=retrained)
    with pytest.warns(UserWarning, match="loaded anyway"):
        loaded = GenRLAgent.load(ref, model=retrained, allow_model_mismatch=True)
    assert loaded.world_model is retrained
    # the referenced checkpoint replaced by a retrained model in place: refused too
    retrained.save(ckpt)
    with pytest.raises(CheckpointError, match="not the one this agent was trained with"):
        GenRLAgent.load(ref)
    # another VLM identity with the same width
    other_vlm = dict(vlm.identity.to_dict(), weights="another-seed")
    renamed = MFWM(preset("tiny", action_dim=ACTION_DIM, embed_dim=vlm.embed_dim), domain="walker",
                   vlm_identity=other_vlm)
    renamed.load_state_dict(model.state_dict())
    with pytest.raises(CheckpointError, match="VLM .* but the model given has VLM"):
        GenRLAgent.load(ref, model=renamed, allow_model_mismatch=True)
    # the same weights from anywhere (here the object itself) load silently
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(_rollout(GenRLAgent.load(ref, model=model)), _rollout(agent))


def test_agents_saved_before_the_check_still_load_with_a_warning(trained: GenRLAgent, model: MFWM,
                                                                 tmp_path: Path) -> None:
    path = trained.save(tmp_path / "old.zip")
    header = _header(path)
    del header["world_model"]  # what earlier versions wrote
    _rewrite_header(path, header)
    np.testing.assert_array_equal(_rollout(GenRLAgent.load(path)), _rollout(trained))  # embedded: its own model
    with pytest.warns(UserWarning, match="saved before agents recorded their world model"):
        loaded = GenRLAgent.load(path, model=model)
    np.testing.assert_array_equal(_rollout(loaded), _rollout(trained))
    cheetah = MFWM(preset("tiny", action_dim=ACTION_DIM, embed_dim=model.config.embed_dim), domain="cheetah",
                   vlm_identity=model.vlm_identity)
    with pytest.raises(CheckpointError, match="'walker' world model"):  # the old header's domain is still checked
        GenRLAgent.load(path, model=cheetah)


def test_load_never_unpickles_the_sb3_blobs(tmp_path: Path) -> None:
    """SB3 zips hold cloudpickle blobs (spaces, schedule, buffers) that run code when unpickled; GenRLAgent.load reads
    none of them, so a tampered agent file cannot run code, and a clean one still loads and acts the same."""
    import base64
    import json
    import pickle
    import zipfile

    from genrl_gym.agents import GenRLAgent

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    from helpers import save_tiny_model

    model = save_tiny_model(tmp_path / "walker.pt")
    clip = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    agent = GenRLAgent(model, clip, vlm="video-only", preset="tiny", seed=0)
    agent.learn(2)
    good = agent.save(tmp_path / "agent.zip")
    with zipfile.ZipFile(good) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    data = json.loads(entries["data"])
    blob = base64.b64encode(pickle.dumps(Evil())).decode()
    pickled = [k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v]
    assert {"observation_space", "lr_schedule"} <= set(pickled)
    for key in pickled:
        data[key][":serialized:"] = blob
    entries["data"] = json.dumps(data).encode()
    bad = tmp_path / "tampered.zip"
    with zipfile.ZipFile(bad, "w") as z:
        for name, content in entries.items():
            z.writestr(name, content)
    pickle.loads(base64.b64decode(blob))  # the control: unpickling the blob does run its code
    assert marker.exists()
    marker.unlink()
    loaded = GenRLAgent.load(bad)
    assert not marker.exists()
    obs = {"image": clip[0]}
    a1, _ = agent.predict(obs, deterministic=True)
    a2, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_allclose(a1, a2, atol=1e-6)
    assert loaded.learning_rate == agent.learning_rate and loaded.observation_space == agent.observation_space
    loaded.learn(1)  # the learning-rate schedule is rebuilt from the config
