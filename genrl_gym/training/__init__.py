"""MFWM training: losses (pure functions) and the trainer (single process or torchrun/DDP)."""

from __future__ import annotations

from genrl_gym.training.losses import (aligner_loss, connector_aligner_loss, connector_kl_loss, image_loss, kl_balance_loss,
                                       world_model_loss)
from genrl_gym.training.trainer import STAGES, Trainer, init_distributed, train_mfwm

__all__ = ["Trainer", "train_mfwm", "init_distributed", "STAGES", "kl_balance_loss", "image_loss", "connector_kl_loss",
           "aligner_loss", "world_model_loss", "connector_aligner_loss"]
