"""Model store: path/name resolution, GENRL_HOME, shipped models, the per-process cache and its errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

import genrl_gym  # noqa: F401  (render guard first)
from genrl_gym import model_store
from genrl_gym.model_store import clear_model_cache, genrl_home, resolve_model, resolve_model_path
from genrl_gym.models import MFWM
from genrl_gym.utils import CheckpointError
from helpers import save_tiny_model


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point GENRL_HOME and the shipped-model directory at empty temp dirs; start with an empty cache."""
    home = tmp_path / "home"
    monkeypatch.setenv("GENRL_HOME", str(home))
    monkeypatch.setattr(model_store, "PRETRAINED_DIR", tmp_path / "pretrained")
    clear_model_cache()
    yield home
    clear_model_cache()


def test_genrl_home_default_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert genrl_home() == tmp_path / "home"
    monkeypatch.delenv("GENRL_HOME")
    assert genrl_home() == Path("~/.cache/genrl_gym").expanduser()


def test_path_loads_and_is_cached(tmp_path: Path) -> None:
    path = save_tiny_model(tmp_path / "m.pt")
    a = resolve_model(path)
    b = resolve_model(str(path))
    assert isinstance(a, MFWM) and a is b and not a.training
    assert model_store.model_cache_info() == [str(path.resolve())]
    # a rewritten checkpoint (new mtime/size key) is reloaded, and the stale entry dropped
    save_tiny_model(tmp_path / "m.pt", seed=1)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    c = resolve_model(path)
    assert c is not a
    assert not torch.equal(c.world_model.decoder.linear.weight, a.world_model.decoder.linear.weight)
    assert len(model_store.model_cache_info()) == 1


def test_directory_path(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    save_tiny_model(d / "model.pt")
    assert resolve_model_path(d) == ((d / "model.pt").resolve(), "path")
    save_tiny_model(d / "other.pt")  # model.pt still wins
    assert resolve_model_path(d)[0].name == "model.pt"
    (d / "model.pt").unlink()
    save_tiny_model(d / "third.pt")
    with pytest.raises(CheckpointError, match="several checkpoints"):
        resolve_model_path(d)


def test_name_from_store_file_and_dir(_isolated_store: Path, caplog: pytest.LogCaptureFixture) -> None:
    models = _isolated_store / "models"
    models.mkdir(parents=True)
    save_tiny_model(models / "walker.pt")
    (models / "cheetah").mkdir()
    save_tiny_model(models / "cheetah" / "model.pt", domain="cheetah")
    with caplog.at_level(logging.INFO, logger="genrl_gym.model_store"):
        assert resolve_model("walker", domain="walker").domain == "walker"
    assert "local store" in caplog.text and "walker.pt" in caplog.text
    assert resolve_model("cheetah").domain == "cheetah"
    assert set(model_store.available_models()) == {"walker", "cheetah"}


def test_name_from_shipped_and_store_shadows(tmp_path: Path, _isolated_store: Path, caplog: pytest.LogCaptureFixture) -> None:
    shipped = tmp_path / "pretrained" / "walker"
    shipped.mkdir(parents=True)
    save_tiny_model(shipped / "model.pt")
    with caplog.at_level(logging.INFO, logger="genrl_gym.model_store"):
        path, source = resolve_model_path("walker")
        resolve_model("walker")
    assert source == "pretrained" and path == (shipped / "model.pt").resolve()
    assert "shipped pretrained" in caplog.text
    (_isolated_store / "models").mkdir(parents=True)
    save_tiny_model(_isolated_store / "models" / "walker.pt", seed=3)
    assert resolve_model_path("walker")[1] == "store"


def test_unknown_name_says_how_to_train(_isolated_store: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        resolve_model("walker")
    msg = str(info.value)
    assert "no world model named 'walker'" in msg
    assert "genrl pipeline --domain walker --preset cpu --out" in msg
    assert str(_isolated_store / "models" / "walker.pt") in msg and "GENRL_HOME" in msg


def test_missing_path_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        resolve_model(tmp_path / "nope" / "model.pt")
    assert isinstance(info.value, CheckpointError)
    with pytest.raises(FileNotFoundError):
        resolve_model("runs/missing.pt")


def test_domain_mismatch(tmp_path: Path) -> None:
    path = save_tiny_model(tmp_path / "cheetah.pt", domain="cheetah")
    with pytest.raises(CheckpointError, match="'cheetah' domain and cannot score 'walker'"):
        resolve_model(path, domain="walker")
    model = resolve_model(path, domain="cheetah")
    with pytest.raises(CheckpointError, match="cannot score 'walker'"):
        resolve_model(model, domain="walker")
    assert resolve_model(model, domain="cheetah") is model


def test_corrupt_checkpoint_and_bad_argument(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        resolve_model(bad)
    with pytest.raises(TypeError, match="MFWM, a checkpoint path or a model name"):
        resolve_model(3)  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="checkpoint path or a model name"):
        resolve_model("  ")
