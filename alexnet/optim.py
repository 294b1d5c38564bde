"""The paper's optimiser: SGD with momentum and weight decay (section 5), its update rule
across learning-rate changes, and the bias settings of Krizhevsky's own code.

The paper writes the update as ``v <- 0.9 v - 0.0005 eps w - eps grad; w <- w + v``:
the velocity carries the learning rate it was accumulated with. PyTorch's SGD keeps
``buf <- 0.9 buf + grad + wd w`` and steps by ``-lr * buf``, so while the learning rate
is constant the two are the same (``v = -lr * buf``), but after a division by 10 PyTorch
applies the new rate to the whole history at once, where the paper's velocity still
carries the old one for the next few dozen steps. `set_lr` with ``rule="paper"`` rescales
the buffers by old_lr / new_lr at each change, which makes PyTorch's SGD follow the
paper's equations exactly.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

MomentumRule = Literal["paper", "pytorch"]


# Layers whose weight is a per-channel scale, not a filter: recipes may leave it undecayed.
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def parameter_groups(model: nn.Module, weight_decay: float, bias_lr_mult: float,
                     bias_decay: bool, norm_decay: bool = True) -> list[dict]:
    """Weights, normalisation layers' scales and biases as up to three groups, found by
    parameter name (``*.bias``) and layer type (`NORM_LAYERS`), so that the same rule
    holds for any network. A network without norm layers (AlexNet) gets exactly two
    groups, as before they existed, so its optimiser state still loads. Each group keeps
    its `lr_mult` for `set_lr`."""
    norm_scales = {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters(recurse=False)}
    weights, norms, biases = [], [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (biases if name.endswith("bias") else norms if id(p) in norm_scales else weights).append(p)
    groups = [{"params": weights, "weight_decay": weight_decay, "lr_mult": 1.0}]
    if norms:
        groups.append({"params": norms, "weight_decay": weight_decay if norm_decay else 0.0, "lr_mult": 1.0})
    if biases:
        groups.append({"params": biases, "weight_decay": weight_decay if bias_decay else 0.0,
                       "lr_mult": bias_lr_mult})
    return groups


def build_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float,
                    bias_lr_mult: float = 1.0, bias_decay: bool = True, norm_decay: bool = True) -> torch.optim.SGD:
    groups = parameter_groups(model, weight_decay, bias_lr_mult, bias_decay, norm_decay)
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def set_lr(optimizer: torch.optim.Optimizer, lr: float, rule: MomentumRule = "paper") -> None:
    """Set every group's learning rate to ``lr * lr_mult``. Under the paper's rule the
    momentum buffers are rescaled so that the velocity keeps the rate it was built with."""
    if rule not in ("paper", "pytorch"):
        raise ValueError(f"momentum rule must be 'paper' or 'pytorch', got {rule!r}")
    for group in optimizer.param_groups:
        new, old = lr * group.get("lr_mult", 1.0), group["lr"]
        if rule == "paper" and old != new and old > 0:
            for p in group["params"]:
                buf = optimizer.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    buf.mul_(old / new)
        group["lr"] = new
