"""AlexNet: Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", NIPS 2012. The network is the project's own
(`alexnet.model.AlexNet`, docs/model.md); its recipe is the training config's defaults."""

from __future__ import annotations

from alexnet.model import Activation, AlexNet, BiasInit, Kernels, LRNConvention, Pooling
from alexnet.models.registry import register


@register("alexnet", paper="Krizhevsky, Sutskever, Hinton: ImageNet Classification with Deep Convolutional "
                           "Neural Networks, NIPS 2012",
          fixed_input=True, options=("grouped", "lrn", "bias_init", "dropout", "activation", "pooling",
                                     "remove_conv", "kernels"))
def alexnet(num_classes: int = 1000, grouped: bool = True, lrn: LRNConvention = "paper",
            bias_init: BiasInit = "paper", dropout: float = 0.5, activation: Activation = "relu",
            pooling: Pooling = "overlapping", remove_conv: int = 0, kernels: Kernels = "full") -> AlexNet:
    return AlexNet(num_classes, grouped=grouped, lrn=lrn, bias_init=bias_init, dropout=dropout,
                   activation=activation, pooling=pooling, remove_conv=remove_conv, kernels=kernels)
