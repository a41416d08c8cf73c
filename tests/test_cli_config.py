"""The ``genrl`` flags are generated from the commands' config dataclasses (``genrl_gym._argparse_dataclass``)."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from genrl_gym._argparse_dataclass import add_dataclass_arguments, dataclass_from_args, field_docs, plain_text
from genrl_gym.cli import build_parser, commands, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every leaf subparser by command name (``store verify`` for a nested one)."""
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sp in action.choices.items():
                nested = _subparsers(sp)
                out.update({f"{name} {k}": v for k, v in nested.items()} if nested else {name: sp})
    return out


def _expected_flags(cls: type, prefix: str = "", exclude: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """dest -> option strings, written out from the dataclass fields independently of the generator."""
    hints = typing.get_type_hints(cls)
    out: dict[str, set[str]] = {}
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        if path in exclude:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(_expected_flags(hints[f.name], path + ".", exclude))
        elif f.metadata.get("positional"):
            out[path] = set()
        else:
            flag = "--" + path.replace("_", "-")
            out[path] = {flag, "--no-" + flag[2:]} if hints[f.name] is bool else {flag}
    return out


def test_every_commands_flags_are_its_dataclass_fields() -> None:
    subs = _subparsers(build_parser())
    cmds = commands()
    assert set(subs) == set(cmds)
    for name, command in cmds.items():
        expected: dict[str, set[str]] = {}
        for spec in command.specs:
            for dest, flags in _expected_flags(spec.cls, exclude=spec.exclude).items():
                expected[dest] = flags | set(spec.aliases.get(dest, ()))
        got: dict[str, set[str]] = {}
        for a in subs[name]._actions:
            if a.dest != "help" and a.help != argparse.SUPPRESS:
                got[a.dest] = set(a.option_strings)
        assert got == expected, name
        assert all(a.help for a in subs[name]._actions), f"{name}: a field without a docstring"


def test_defaults_on_the_command_line_are_the_dataclass_defaults(tmp_path: Path) -> None:
    from genrl_gym.demo import DemoConfig
    from genrl_gym.training.pipeline import PipelineConfig

    p = build_parser()
    assert dataclass_from_args(DemoConfig, p.parse_args(["demo"])) == DemoConfig()
    args = p.parse_args(["pipeline", "--out", str(tmp_path)])
    assert dataclass_from_args(PipelineConfig, args) == PipelineConfig()
    args = p.parse_args(["pipeline", "--out", str(tmp_path), "--steps", "7", "--expert-steps", "9", "--tasks", "stand",
                         "walk", "--warm-start", "walk=stand", "--expert.stages", "0.5", "1", "--num-envs", "3"])
    cfg = dataclass_from_args(PipelineConfig, args)
    assert (cfg.mfwm_steps, cfg.expert.total_steps, cfg.expert.stages, cfg.num_envs) == (7, 9, (0.5, 1.0), 3)
    assert cfg.tasks == ("stand", "walk") and cfg.warm_start == {"walk": "stand"}
    assert dataclass_from_args(DemoConfig, p.parse_args(["demo", "--seeds", "4", "5"])).seeds == (4, 5)


def test_help_is_plain_text() -> None:
    parser = build_parser()
    texts = [parser.format_help()] + [sp.format_help() for sp in _subparsers(parser).values()]
    for text in texts:
        assert "``" not in text and ":func:" not in text and ":attr:" not in text and ":data:" not in text
    assert any("genrl_gym.vlm.load_vlm" in t for t in texts)  # the role's target stays, as plain text
    assert plain_text("see :func:`~genrl_gym.reward.trajectory_match` and ``x``\n   y") == "see trajectory_match and x y"
    assert plain_text(":mod:`genrl_gym.reward`") == "genrl_gym.reward"


def test_choices_come_from_the_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    from genrl_gym import reward
    from genrl_gym.agents import actor_critic
    from genrl_gym.models import presets

    monkeypatch.setitem(presets.PRESETS, "fake_mfwm", {})
    monkeypatch.setitem(actor_critic.AGENT_PRESETS, "fake_agent", {})
    monkeypatch.setattr(reward, "ALIGNS", (*reward.ALIGNS, "fake_align"))
    subs = _subparsers(build_parser())
    choices = {(name, a.dest): a.choices for name, sp in subs.items() for a in sp._actions if a.choices}
    assert "fake_mfwm" in choices["train-mfwm", "preset"] and "fake_mfwm" in choices["pipeline", "preset"]
    assert "fake_agent" in choices["train-agent", "preset"] and "fake_agent" in choices["demo", "agent_preset"]
    assert "fake_align" in choices["export", "align"] and "fake_align" in choices["report", "align"]
    args = build_parser().parse_args(["train-mfwm", "--data", "d", "--out", "o", "--preset", "fake_mfwm"])
    assert args.preset == "fake_mfwm"
    monkeypatch.undo()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train-mfwm", "--data", "d", "--out", "o", "--preset", "fake_mfwm"])


def test_the_old_reward_align_flag_still_works_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["export", "--run", "r", "--domain", "walker", "--reward-align", "phase"])
    assert args.align == "phase"
    assert "--reward-align is deprecated; use --align" in capsys.readouterr().err
    assert parser.parse_args(["export", "--run", "r", "--domain", "walker"]).align is None
    help_ = _subparsers(parser)["export"].format_help()
    assert "--align" in help_ and "--reward-align" not in help_
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "--run", "r", "--domain", "walker", "--reward-align", "dtw"])


def test_installed_cli_does_not_import_the_benchmarks() -> None:
    code = ("import sys, genrl_gym.cli as c; c.build_parser().format_help(); "
            "bad = sorted(m for m in sys.modules if m == 'benchmarks' or m.startswith('benchmarks.')); "
            "assert not bad, bad; assert 'bench' not in c.commands()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr
    with pytest.raises(SystemExit):
        main(["bench"])


def test_config_json_is_the_resolved_dataclass(tmp_path: Path) -> None:
    import json

    assert main(["store", "verify", str(tmp_path / "missing")]) == 2  # reads only: writes no config
    assert main(["collect", "--domain", "walker", "--task", "stand", "--out", str(tmp_path / "d"), "--episodes", "1",
                 "--episode-frames", "8", "--no-deterministic"]) == 0
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    assert cfg["command"] == "collect" and cfg["episodes"] == 1 and cfg["episode_frames"] == 8
    assert cfg["out"] == str(tmp_path / "d") and cfg["vectorization"] == "sync" and cfg["deterministic"] is False


# -------------------------------------------------------------------------------------------- the generator itself
@dataclass
class _Inner:
    rate: float = field(default=0.5, metadata={"positive": True})
    """A ``rate`` (:attr:`Outer.x`), in 1/s; 100% is 1."""


@dataclass(kw_only=True)
class _Outer:
    name: str
    """Required name."""
    kind: Literal["a", "b"] = "a"
    flag: bool = True
    sizes: list[int] = field(default_factory=list)
    pairs: dict[str, int] = field(default_factory=dict)
    inner: _Inner = field(default_factory=_Inner)
    maybe: Path | None = None


def test_generator_types_docs_and_round_trip() -> None:
    assert field_docs(_Inner) == {"rate": "A ``rate`` (:attr:`Outer.x`), in 1/s; 100% is 1."}
    p = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_arguments(p, _Outer)
    assert "A rate (Outer.x), in 1/s; 100% is 1." in " ".join(p.format_help().split())
    ns = p.parse_args(["--name", "n", "--kind", "b", "--no-flag", "--sizes", "1", "2", "--pairs", "x=3",
                       "--inner.rate", "2", "--maybe", "f.txt"])
    assert dataclass_from_args(_Outer, ns) == _Outer(name="n", kind="b", flag=False, sizes=[1, 2], pairs={"x": 3},
                                                     inner=_Inner(2.0), maybe=Path("f.txt"))
    assert dataclass_from_args(_Outer, p.parse_args(["--name", "n"])) == _Outer(name="n")
    for bad in (["--kind", "c"], ["--inner.rate", "0"], ["--pairs", "x"], []):
        with pytest.raises(SystemExit):
            p.parse_args(["--name", "n"] + bad if bad else bad)
