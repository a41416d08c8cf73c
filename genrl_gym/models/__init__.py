"""Multimodal-foundation world model: RSSM world model, connector, aligner and the MFWM bundle (see INTERFACES.md)."""

from __future__ import annotations

from genrl_gym.models.aligner import Aligner
from genrl_gym.models.connector import Connector, window_embeddings
from genrl_gym.models.mfwm import MFWM, CheckpointNotFoundError
from genrl_gym.models.presets import (PRESETS, AlignerConfig, ConnectorConfig, MFWMConfig, TrainConfig, WorldModelConfig,
                                      preset)
from genrl_gym.models.rssm import RSSM, State
from genrl_gym.models.world_model import WorldModel

__all__ = ["MFWM", "MFWMConfig", "WorldModelConfig", "ConnectorConfig", "AlignerConfig", "TrainConfig", "PRESETS", "preset",
           "State", "RSSM", "WorldModel", "Connector", "Aligner", "window_embeddings", "CheckpointNotFoundError"]
