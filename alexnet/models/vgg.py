"""VGG: Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015 (arXiv:1409.1556), configurations A (11 layers), D (16) and E (19).

torchvision's builders, without weights; no batch norm, as in the paper. Initialisation
(section 3.1): the paper trained A from N(0, 1e-2) and started the deeper nets from A's
weights, and adds that "after the paper submission we found that it is possible to
initialise the weights without pre-training by using the random initialisation procedure
of Glorot & Bengio (2010)": that is what every VGG here gets (biases 0), since the
project trains each network from scratch.
"""

from __future__ import annotations

from torch import nn

from alexnet.models.registry import register, torchvision_model

PAPER = "Simonyan, Zisserman: Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015"
# Section 3.1: batch 256, momentum 0.9, weight decay 5e-4, dropout 0.5 on fc6 and fc7, lr
# 1e-2 divided by 10 when the validation accuracy stopped improving, three times in all,
# training stopped after 370K iterations (74 epochs).
RECIPE = {"epochs": 74, "batch_size": 256, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
          "lr_schedule": "plateau", "lr_max_drops": 3, "dropout": 0.5}


def init_glorot(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


@register("vgg11", paper=PAPER, options=("dropout",), recipe=RECIPE)
def vgg11(num_classes: int = 1000, dropout: float = 0.5) -> nn.Module:
    return init_glorot(torchvision_model("vgg11", num_classes=num_classes, dropout=dropout))


@register("vgg16", paper=PAPER, options=("dropout",), recipe=RECIPE)
def vgg16(num_classes: int = 1000, dropout: float = 0.5) -> nn.Module:
    return init_glorot(torchvision_model("vgg16", num_classes=num_classes, dropout=dropout))


@register("vgg19", paper=PAPER, options=("dropout",), recipe=RECIPE)
def vgg19(num_classes: int = 1000, dropout: float = 0.5) -> nn.Module:
    return init_glorot(torchvision_model("vgg19", num_classes=num_classes, dropout=dropout))
