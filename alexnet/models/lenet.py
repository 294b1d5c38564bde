"""LeNet-5: LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to
document recognition", Proceedings of the IEEE 86(11), 1998, section II.B and appendix A.

torchvision has no LeNet, so it is written here to the paper: C1 (6 maps, 5x5) - S2
(2x2 subsampling with a trainable coefficient and bias per map) - C3 (16 maps, 5x5,
connected to S2 as the paper's Table I) - S4 - C5 (120 maps, 5x5) - F6 (84 units) -
Euclidean RBF outputs, every layer up to F6 squashed by f(a) = 1.7159 tanh(2a/3).
That is the paper's 60,000 trainable parameters (the RBF centres are fixed).

Its input is a 32x32 grey image. The project's pipeline delivers 224x224 RGB crops; the
registry's `ResizeInput` resizes them to 32x32 on the device, and the network's first
step takes the mean of the three channels (equal on grey scans) and scales the pixels
(0-255 less the training mean) to the paper's input range, whose white-to-black span is
1.275 (-0.1 to 1.175). docs/architectures.md lists the choices the paper leaves open.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.models.registry import register

# f(a) = A tanh(S a), appendix A: A = 1.7159, S = 2/3.
SQUASH_A, SQUASH_S = 1.7159, 2.0 / 3.0
INPUT_SCALE = 1.275 / 255.0  # the paper's white-to-black span over 0-255

# Table I: the S2 maps each C3 map reads. Six read 3 neighbours, six read 4 neighbours,
# three read 4 non-neighbours, and one reads all six.
C3_INPUTS = (
    *[tuple((i + k) % 6 for k in range(3)) for i in range(6)],
    *[tuple((i + k) % 6 for k in range(4)) for i in range(6)],
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


def squash(x: torch.Tensor) -> torch.Tensor:
    return SQUASH_A * torch.tanh(SQUASH_S * x)


class Subsampling(nn.Module):
    """S2 / S4: the sum of each 2x2 block times a trainable coefficient, plus a
    trainable bias, per map (section II.B)."""

    def __init__(self, maps: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(maps))
        self.bias = nn.Parameter(torch.empty(maps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        summed = F.avg_pool2d(x, 2) * 4
        return summed * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv(nn.Module):
    """C3: each output map reads only the input maps Table I connects it to. Maps that
    read the same number of inputs form one grouped convolution over the inputs each
    group needs, gathered in order, so the parameters are exactly the table's (1,516)."""

    def __init__(self, inputs: tuple[tuple[int, ...], ...], kernel: int) -> None:
        super().__init__()
        sizes = sorted({len(s) for s in inputs})
        self.order: list[int] = []
        self.convs = nn.ModuleList()
        for size in sizes:
            maps = [i for i, s in enumerate(inputs) if len(s) == size]
            self.register_buffer(f"gather_{size}", torch.tensor([j for i in maps for j in inputs[i]]),
                                 persistent=False)
            self.convs.append(nn.Conv2d(size * len(maps), len(maps), kernel, groups=len(maps)))
            self.order += maps
        self.register_buffer("inverse", torch.argsort(torch.tensor(self.order)), persistent=False)
        self.sizes = sizes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [conv(x.index_select(1, getattr(self, f"gather_{size}")))
                for size, conv in zip(self.sizes, self.convs, strict=True)]
        return torch.cat(outs, 1).index_select(1, self.inverse)


class LeNet5(nn.Module):
    """LeNet-5 for 32x32 inputs; the output is minus each class's RBF distance, so that
    cross-entropy over it is the paper's MAP criterion (its equation 9 without the
    rubbish-class constant j)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.s2 = Subsampling(6)
        self.c3 = PartialConv(C3_INPUTS, 5)
        self.s4 = Subsampling(16)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        # The RBF centres are fixed, not trained: the paper drew them as +-1 bitmaps of each
        # character and notes that random +-1 codes would do; for any number of classes,
        # random +-1 codes are what can be drawn. A buffer, so a checkpoint keeps them.
        codes = torch.randint(0, 2, (num_classes, 84)).float() * 2 - 1
        self.register_buffer("rbf_centres", codes)
        init_lecun(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(1, keepdim=True) * INPUT_SCALE  # grey, in the paper's input range
        x = squash(self.s2(squash(self.c1(x))))
        x = squash(self.s4(squash(self.c3(x))))
        x = squash(self.c5(x)).flatten(1)
        x = squash(self.f6(x))
        return -(x.unsqueeze(1) - self.rbf_centres).pow(2).sum(-1)


def init_lecun(model: LeNet5) -> None:
    """Appendix C: every trainable parameter uniform in +-2.4 / F, F the fan-in of the
    unit it belongs to (a subsampling unit's coefficient sees 4 inputs)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            fan_in = module.weight[0].numel()
        elif isinstance(module, Subsampling):
            fan_in = 4
        else:
            continue
        bound = 2.4 / fan_in
        nn.init.uniform_(module.weight, -bound, bound)
        nn.init.uniform_(module.bias, -bound, bound)


@register("lenet5", paper="LeCun, Bottou, Bengio, Haffner: Gradient-based learning applied to document "
                          "recognition, Proc. IEEE 1998",
          input_size=32, fixed_input=True,
          recipe={"epochs": 20, "batch_size": 32, "lr": 0.01, "momentum": 0.0, "weight_decay": 0.0,
                  "lr_schedule": "step", "lr_steps": (2, 5, 8, 12), "lr_factor": 0.5,
                  "bias_lr_mult": 1.0, "bias_decay": True})
def lenet5(num_classes: int = 10) -> LeNet5:
    return LeNet5(num_classes)

