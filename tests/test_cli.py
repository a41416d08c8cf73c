"""The ``genrl`` command end to end on the tiny preset, and its errors on bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from genrl_gym.cli import main


def _genrl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "genrl_gym.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_end_to_end_tiny(tmp_path: Path) -> None:
    data, run, agent_run = tmp_path / "data", tmp_path / "mfwm", tmp_path / "agent"
    r = _genrl("collect", "--domain", "walker", "--task", "stand", "--episodes", "2", "--episode-frames", "80",
               "--out", str(data))
    assert r.returncode == 0, r.stderr
    assert len(list(data.glob("ep-*.npz"))) == 2
    assert _genrl("embed", "--data", str(data)).returncode == 0
    r = _genrl("train-mfwm", "--data", str(data), "--out", str(run), "--preset", "tiny", "--steps", "4")
    assert r.returncode == 0, r.stderr
    model = run / "mfwm.pt"
    assert model.exists() and (run / "config.json").exists()
    # A video prompt cut from the collected data.
    import numpy as np

    from genrl_gym.data import EpisodeStore
    from genrl_gym.prompts import write_video

    store = EpisodeStore(data, create=False)
    clip = write_video(store.load(store.paths()[0])["image"][:16], tmp_path / "clip.gif")
    gif = tmp_path / "imagined.gif"
    r = _genrl("imagine", "--model", str(model), "--prompt", str(clip), "--out", str(gif))
    assert r.returncode == 0, r.stderr
    assert gif.stat().st_size > 0
    r = _genrl("train-agent", "--model", str(model), "--prompt", str(clip), "--out", str(agent_run), "--preset", "tiny",
               "--steps", "3", "--reality-every", "2")
    assert r.returncode == 0, r.stderr
    assert (agent_run / "agent.zip").exists()
    events = b"".join(p.read_bytes() for p in (agent_run / "tb").rglob("events.out.tfevents.*"))
    for tag in (b"reality/imagined_reward_per_step", b"reality/real_reward_per_step", b"reality/true_return"):
        assert tag in events  # the reality checks reach TensorBoard
    cfg = json.loads((agent_run / "config.json").read_text())
    assert cfg["command"] == "train-agent" and cfg["steps"] == 3
    r = _genrl("evaluate", "--agent", str(agent_run / "agent.zip"), "--domain", "walker", "--task", "stand",
               "--episodes", "1", "--episode-frames", "20", "--out", str(tmp_path / "eval"))
    assert r.returncode == 0, r.stderr
    ev = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert len(ev["returns"]) == 1 and np.isfinite(ev["mean"])


def test_bad_arguments_give_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collect", "--domain", "walkr", "--task", "stand", "--out", str(tmp_path / "d")]) == 2
    assert "walker" in capsys.readouterr().err  # suggests the valid domain
    assert main(["embed", "--data", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["imagine", "--model", str(tmp_path / "nope.pt"), "--prompt", "x.gif"]) == 2
    assert "nope.pt" in capsys.readouterr().err
    assert main(["evaluate", "--agent", str(tmp_path / "agent.zip"), "--out", str(tmp_path / "e")]) == 2
    assert main(["train-agent", "--prompt", "stand", "--out", str(tmp_path / "a"), "--reality-every", "-5"]) == 2
    assert "--reality-every -5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["collect", "--domain", "walker", "--task", "stand", "--out", str(tmp_path), "--episodes", "0"])
    with pytest.raises(SystemExit):
        main(["no-such-command"])
    with pytest.raises(SystemExit):
        main(["pipeline", "--out", str(tmp_path / "p"), "--warm-start", "walk"])
    assert "TASK=SOURCE" in capsys.readouterr().err
    assert main(["pipeline", "--domain", "walker", "--out", str(tmp_path / "p"), "--warm-start", "stand=walk"]) == 2
    assert "warm start stand=walk" in capsys.readouterr().err
    assert not (tmp_path / "p" / "experts").exists()
