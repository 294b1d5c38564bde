"""What a training config describes, built without Ray or MLflow: the network, the
optimiser with its parameter groups, and the lr schedule. The training workers, the
checkpoint loaders and the GPU check (which runs where Ray is not installed) all build
them here, so each builds exactly what `jobs/train.py` trains."""

from __future__ import annotations

from typing import Any

import torch

from alexnet import models
from alexnet.config import TrainConfig
from alexnet.optim import build_optimizer
from alexnet.schedule import LRSchedule


def build_model(cfg: TrainConfig, num_classes: int) -> torch.nn.Module:
    """The network of `cfg.arch`, built exactly as a loader rebuilds it from the checkpoint."""
    return models.from_model_args(model_args(cfg, num_classes))


def model_args(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    """What a checkpoint needs to rebuild the network without the training config: its
    name, classes, input size, and the settings its builder takes (the registry's `options`)."""
    arch = models.get(cfg.arch)
    return {"arch": cfg.arch, "num_classes": num_classes, "input_size": cfg.input_size or arch.input_size,
            **{option: getattr(cfg, option) for option in arch.options}}


def build_optimizer_for(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with `cfg`'s parameter groups (bias and norm-layer rules) for any network."""
    return build_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.bias_lr_mult, cfg.bias_decay,
                           cfg.norm_decay)


def schedule_for(cfg: TrainConfig) -> LRSchedule:
    return LRSchedule(cfg.lr, cfg.lr_schedule, patience=cfg.lr_patience, max_drops=cfg.lr_max_drops,
                      steps=cfg.lr_steps, warmup_epochs=cfg.warmup_epochs, factor=cfg.lr_factor)
