"""Networks by name, as torchvision's `models/` keeps them: one builder per network,
registered with a decorator, and `build(name, num_classes, ...)` to get one. Nothing
else in the project branches on a network's name: what differs between networks (their
native input, the training recipe of their paper, an auxiliary loss, which training
flags reach the builder) is recorded here, in each entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# The side of the square every pipeline stage delivers: training crops, validation's
# centre crop and prediction's ten crops (alexnet/data/augment.py's CROP).
PIPELINE_CROP = 224
# Below 32 pixels the five stride-2 stages of VGG and ResNet leave no map at all.
MIN_INPUT = 32


@dataclass(frozen=True)
class Arch:
    """One registered network.

    `options` are the training config's settings its builder takes (e.g. AlexNet's
    `grouped`); a checkpoint's `model_args` records them, so a loader rebuilds the same
    network. `recipe` is the training config of its paper (docs/architectures.md gives
    each value's source): `jobs/train.py --arch NAME` starts from it and flags override it.
    `fixed_input`: its classifier reads maps of one size, so it takes only its native input.
    `aux_loss_weight`: the weight of the auxiliary classifiers' losses (GoogLeNet's 0.3),
    for a network whose training-mode output is ``(logits, *aux_logits)``."""

    name: str
    builder: Callable[..., nn.Module]
    paper: str
    input_size: int = PIPELINE_CROP
    fixed_input: bool = False
    options: tuple[str, ...] = ()
    recipe: Mapping[str, Any] = field(default_factory=dict)
    aux_loss_weight: float = 0.0


ARCHS: dict[str, Arch] = {}


def register(name: str, *, paper: str, input_size: int = PIPELINE_CROP, fixed_input: bool = False,
             options: tuple[str, ...] = (), recipe: Mapping[str, Any] | None = None,
             aux_loss_weight: float = 0.0) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register the decorated builder ``fn(num_classes, **options) -> nn.Module`` as `name`."""
    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in ARCHS:
            raise ValueError(f"network {name!r} is registered twice")
        ARCHS[name] = Arch(name, fn, paper, input_size, fixed_input, tuple(options), dict(recipe or {}),
                           aux_loss_weight)
        return fn
    return add


def names() -> list[str]:
    return list(ARCHS)


def get(name: str) -> Arch:
    if name not in ARCHS:
        raise ValueError(f"unknown network {name!r}: one of {', '.join(ARCHS)}")
    return ARCHS[name]


def input_size_problem(name: str, input_size: int) -> str:
    """Why network `name` cannot take `input_size` (0 = its native size), or ''."""
    arch = ARCHS.get(name)
    if arch is None or input_size in (0, arch.input_size):
        return ""
    if arch.fixed_input:
        return (f"--input-size {input_size}: {name} takes only its native {arch.input_size}x{arch.input_size} "
                "input (its fully connected layers read maps of one size); pass 0")
    if input_size < MIN_INPUT:
        return f"--input-size {input_size}: {name} needs at least {MIN_INPUT}x{MIN_INPUT} (0 = its native size)"
    return ""


class ResizeInput(nn.Module):
    """Resizes the pipeline's 224 crops to the network's input on the device, inside the
    network, so that every path that feeds it 224 crops (training, validation, the
    ensemble, prediction, the exported MLflow model) gives it the same input. Only a
    network whose input is not 224 has one: the others pay nothing."""

    def __init__(self, net: nn.Module, size: int) -> None:
        super().__init__()
        self.size = size
        self.net = net

    def forward(self, x: torch.Tensor) -> Any:
        if x.shape[-2:] != (self.size, self.size):  # a static shape: no read-back, one graph
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return self.net(x)

    def extra_repr(self) -> str:
        return f"size={self.size}"


def build(name: str, num_classes: int = 1000, input_size: int = 0, **options: Any) -> nn.Module:
    """Network `name` for `num_classes` classes, taking the pipeline's 224 crops; its
    input is `input_size` (0 = the network's native size), resized on the device when
    that is not 224. `options` go to its builder (only the ones it registered)."""
    arch = get(name)
    problem = input_size_problem(name, input_size)
    if problem:
        raise ValueError(problem)
    unknown = sorted(set(options) - set(arch.options))
    if unknown:
        raise TypeError(f"{name} takes no option {', '.join(unknown)} (it takes: {', '.join(arch.options) or 'none'})")
    net = arch.builder(num_classes, **options)
    size = input_size or arch.input_size
    return net if size == PIPELINE_CROP else ResizeInput(net, size)


def torchvision_model(name: str, **kwargs: Any) -> nn.Module:
    """torchvision's builder `name` with no weights (nothing is downloaded). torchvision is
    imported here, when a network is built, not with the registry: its import brings
    torch.compile's machinery (~1.7 s on 2 vCPUs), which every process that reads a config
    (the jobs' drivers, the training workers) would otherwise pay for nothing."""
    from torchvision import models

    return getattr(models, name)(weights=None, **kwargs)


def from_model_args(model_args: Mapping[str, Any]) -> nn.Module:
    """The network a checkpoint's `model_args` describe. Checkpoints written before
    networks had names hold no `arch`: they are AlexNets."""
    args = dict(model_args)
    return build(args.pop("arch", "alexnet"), **args)
