"""Configuration dataclasses and named size presets of the multimodal-foundation world model (MFWM).

``preset(name, **overrides)`` returns a fresh :class:`MFWMConfig`. Presets:

=========  =========  ==============  =========  ==========  ===============================================
name       cnn_depth  deter / hidden  latents    batch B x T  use
=========  =========  ==============  =========  ==========  ===============================================
``tiny``   4          32 / 32         4 x 4      4 x 16      unit tests (seconds on 2 CPU cores)
``cpu``    8          256 / 256       16 x 16    16 x 16     CPU training runs (minutes to hours)
``small``  16         256 / 256       16 x 16    16 x 32     small GPU / long CPU runs; the shipped models
``paper``  48         1024 / 1024     32 x 32    48 x 48     GenRL's sizes (the paper's), GPU
=========  =========  ==============  =========  ==========  ===============================================

Overrides are keyword arguments: top-level fields (``embed_dim=512``), nested sections as dicts
(``world_model={"deter": 64}``) or with a double underscore (``world_model__deter=64``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["WorldModelConfig", "ConnectorConfig", "AlignerConfig", "TrainConfig", "MFWMConfig", "preset", "PRESETS"]


@dataclass
class WorldModelConfig:
    """RSSM world model (GenRL paper). Latent = ``stoch`` categoricals x ``classes`` classes, one-hot."""

    cnn_depth: int = 48  # encoder channels depth * (1, 2, 4, 8); decoder's first Linear has 32 * depth outputs
    deter: int = 1024  # GRU state size
    hidden: int = 1024  # width of the GRU input / posterior / prior MLP layers
    stoch: int = 32  # number of categorical variables
    classes: int = 32  # classes per categorical
    unimix: float = 0.01  # uniform mixture in every categorical (prior and posterior)
    kl_free: float = 1.0  # free nats, clamped per (b, t) before the mean
    kl_balance: float = 0.85  # weight of the dynamics term KL[sg(q) || p]; 1 - it weights the representation term
    kl_scale: float = 0.6  # total KL weight
    image_scale: float = 1.0  # weight of the (summed) squared-error image loss
    gru_update_bias: float = -1.0  # bias on the GRU update gate (favours keeping the state early in training)


@dataclass
class ConnectorConfig:
    """Connector (GenRL paper: the connector): prior-only RSSM driven by VLM embeddings. Its latent space is the WM's."""

    deter: int = 1024
    hidden: int = 1024
    n_frames: int = 8  # frames per VLM window; connector chunks have this length
    kl_balance: float = 0.8  # weight of KL[p_conn || sg(q_wm)], the only term with a gradient (posterior detached)
    kl_free: float = 0.0
    loss_scale: float = 1.0
    rescale_embeds: bool = True  # multiply unit-norm embeddings by sqrt(D) before the network
    temporal_embeds: bool = False  # the 8-d one-hot of the position in the window is present but zeroed by default


@dataclass
class AlignerConfig:
    """Aligner (GenRL paper: the aligner): residual U-Net MLP, bottleneck ``embed_dim * mid_ratio``."""

    n_layers: int = 2
    mid_ratio: float = 0.5
    noise: float = 0.5  # e' = normalize((1 - noise) e + noise n / ||n||)
    loss_scale: float = 1.0


@dataclass
class TrainConfig:
    """Optimisation of world model, connector and aligner (two Adam optimisers with the same settings)."""

    batch_size: int = 48
    seq_len: int = 48  # must be a multiple of connector.n_frames (connector windows)
    lr: float = 1e-4
    eps: float = 1e-8
    clip: float = 1000.0  # global gradient-norm clip per optimiser
    weight_decay: float = 1e-6  # decoupled: w <- (1 - wd) w after clipping, independent of lr (as the reference)
    amp: bool = True  # bf16 autocast; only ever used on CUDA
    steps: int = 500_000  # default number of updates for a full run
    checkpoint_every: int = 5000
    log_every: int = 100
    video_every: int = 5000


@dataclass
class MFWMConfig:
    """Everything needed to rebuild an MFWM: sizes of its three parts, data dimensions and optimisation settings."""

    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    connector: ConnectorConfig = field(default_factory=ConnectorConfig)
    aligner: AlignerConfig = field(default_factory=AlignerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    embed_dim: int = 512  # VLM embedding size D
    action_dim: int = 0  # set from the dataset / env (0 = unknown yet; MFWM refuses to build)
    image_size: int = 64  # square RGB frames; the conv stack supports 64 only
    preset: str = "custom"

    @property
    def stoch_dim(self) -> int:
        """Size of the flattened one-hot stochastic state ``S * C``."""
        return self.world_model.stoch * self.world_model.classes

    @property
    def feature_dim(self) -> int:
        """Size F of the reward features (output of the decoder's first Linear): ``32 * cnn_depth``."""
        return 32 * self.world_model.cnn_depth

    def validate(self, *, need_action_dim: bool = True) -> MFWMConfig:
        """Raise ValueError naming the field and the fix when the configuration cannot build a model; return self."""
        wm, tr = self.world_model, self.train
        if self.image_size != 64:
            raise ValueError(f"image_size={self.image_size}: the DreamerV3 conv stack (k4 s2 encoder, k5,5,6,6 decoder) "
                             "only maps 64x64 frames; collect/render the dataset at 64x64")
        if need_action_dim and self.action_dim <= 0:
            raise ValueError("action_dim is not set: pass action_dim=<env action size> (train_mfwm takes it from the store)")
        if self.embed_dim <= 0 or self.embed_dim % 2:
            raise ValueError(f"embed_dim={self.embed_dim} must be a positive even number (the VLM embedding size)")
        for name, v in [("cnn_depth", wm.cnn_depth), ("deter", wm.deter), ("hidden", wm.hidden), ("stoch", wm.stoch),
                        ("classes", wm.classes), ("connector.deter", self.connector.deter),
                        ("connector.hidden", self.connector.hidden), ("batch_size", tr.batch_size), ("seq_len", tr.seq_len)]:
            if v <= 0:
                raise ValueError(f"{name}={v} must be positive")
        if tr.seq_len % self.connector.n_frames:
            raise ValueError(f"train.seq_len={tr.seq_len} must be a multiple of connector.n_frames={self.connector.n_frames} "
                             "(the connector is trained on whole VLM windows)")
        if not 0.0 <= wm.unimix < 1.0:
            raise ValueError(f"unimix={wm.unimix} must be in [0, 1)")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (nested sections as dicts)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Indented JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MFWMConfig:
        """Inverse of :meth:`to_dict`. Unknown keys raise ValueError (a config from a newer version, or a typo)."""
        return _apply(cls(), d, "config")

    def replace(self, **overrides: Any) -> MFWMConfig:
        """A copy with overrides applied (same syntax as :func:`preset`)."""
        return _apply(MFWMConfig.from_dict(self.to_dict()), _nest(overrides), "override")


_SECTIONS = {"world_model": WorldModelConfig, "connector": ConnectorConfig, "aligner": AlignerConfig, "train": TrainConfig}


def _nest(overrides: dict[str, Any]) -> dict[str, Any]:
    """Turn ``world_model__deter=64`` style keys into nested dicts."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if "__" in key:
            section, sub = key.split("__", 1)
            out.setdefault(section, {})[sub] = value
        elif key in _SECTIONS and isinstance(value, dict):
            out.setdefault(key, {}).update(value)
        else:
            out[key] = value
    return out


def _apply(cfg: MFWMConfig, d: dict[str, Any], what: str) -> MFWMConfig:
    top = {f.name for f in dataclasses.fields(MFWMConfig)}
    for key, value in d.items():
        if key not in top:
            raise ValueError(f"unknown {what} key {key!r}; valid: {sorted(top)}")
        if key in _SECTIONS:
            section = getattr(cfg, key)
            if isinstance(value, _SECTIONS[key]):
                value = dataclasses.asdict(value)  # type: ignore[call-overload]  # a section dataclass instance
            valid = {f.name for f in dataclasses.fields(section)}
            for sub, v in value.items():
                if sub not in valid:
                    raise ValueError(f"unknown {what} key {key}.{sub}; valid: {sorted(valid)}")
                setattr(section, sub, v)
        else:
            setattr(cfg, key, value)
    return cfg


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        world_model=dict(cnn_depth=4, deter=32, hidden=32, stoch=4, classes=4),
        connector=dict(deter=32, hidden=32),
        train=dict(batch_size=4, seq_len=16, steps=100, checkpoint_every=50, log_every=10, video_every=50),
    ),
    "cpu": dict(
        world_model=dict(cnn_depth=8, deter=256, hidden=256, stoch=16, classes=16),
        connector=dict(deter=256, hidden=256),
        train=dict(batch_size=16, seq_len=16, steps=50_000, checkpoint_every=1000, log_every=50, video_every=2000),
    ),
    "small": dict(
        world_model=dict(cnn_depth=16, deter=256, hidden=256, stoch=16, classes=16),
        connector=dict(deter=256, hidden=256),
        train=dict(batch_size=16, seq_len=32, steps=100_000, checkpoint_every=2000, log_every=100, video_every=5000),
    ),
    "paper": dict(),  # the dataclass defaults are the paper's values
}


def preset(name: str = "small", **overrides: Any) -> MFWMConfig:
    """Return the named preset (``tiny``, ``cpu``, ``small``, ``paper``) with ``overrides`` applied.

    Example: ``preset("tiny", embed_dim=16, action_dim=6, world_model__deter=64)``.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    cfg = _apply(MFWMConfig(), PRESETS[name], "preset")
    cfg.preset = name
    return _apply(cfg, _nest(overrides), "override")
