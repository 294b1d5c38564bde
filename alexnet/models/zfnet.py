"""ZFNet: Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks",
arXiv:1311.2901 (2013) / ECCV 2014, figure 3 and section 3.1.

torchvision has no ZFNet, so it is written here to the figure: AlexNet's layout with a
7x7 stride-2 first layer and a stride-2 second layer, on one device (no groups):

    224 -> conv1 96 7x7/2 -> 110 -> pool 3/2 -> 55 -> contrast norm
        -> conv2 256 5x5/2 -> 26 -> pool 3/2 -> 13 -> contrast norm
        -> conv3 384 3x3 -> conv4 384 3x3 -> conv5 256 3x3 -> 13 -> pool 3/2 -> 6
        -> fc6 4096 -> fc7 4096 -> classes

Choices the paper leaves open, each made so that every map has the figure's size
(docs/architectures.md): conv1 pads by 1 (224 -> 110), the pools round up (Caffe's rule:
110 -> 55 and 26 -> 13), conv2 does not pad (55 -> 26), and the contrast normalisation
is AlexNet's local response normalisation across maps, with AlexNet's constants (the
paper names the operation, not its constants).
"""

from __future__ import annotations

import torch
from torch import nn

from alexnet.model import LRNConvention, local_response_norm, paper_classifier
from alexnet.models.registry import register


class ZFNet(nn.Module):
    def __init__(self, num_classes: int = 1000, lrn: LRNConvention = "paper", dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=7, stride=2, padding=1),  # conv1 -> 110x110
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),  # -> 55x55
            local_response_norm(lrn),
            nn.Conv2d(96, 256, kernel_size=5, stride=2),  # conv2 -> 26x26
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),  # -> 13x13
            local_response_norm(lrn),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),  # conv3
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1),  # conv4
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # conv5
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),  # -> 6x6
        )
        # Section 3.1: dropout 0.5 in the fully connected layers 6 and 7, laid out as AlexNet's.
        self.classifier = paper_classifier(num_classes, dropout)
        # Section 3.1: "All weights are initialized to 1e-2 and biases are set to 0",
        # read as N(0, 0.01), AlexNet's initialisation (a constant would keep every filter equal).
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register("zfnet", paper="Zeiler, Fergus: Visualizing and Understanding Convolutional Networks, "
                         "arXiv:1311.2901 (2013), ECCV 2014",
          fixed_input=True, options=("lrn", "dropout"),
          recipe={"epochs": 70, "batch_size": 128, "lr": 0.01, "momentum": 0.9, "lr_schedule": "plateau",
                  "dropout": 0.5})
def zfnet(num_classes: int = 1000, lrn: LRNConvention = "paper", dropout: float = 0.5) -> ZFNet:
    return ZFNet(num_classes, lrn=lrn, dropout=dropout)
