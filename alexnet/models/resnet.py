"""Residual networks, all torchvision's builders without weights:

* ResNet-18/34/50/101/152: He, Zhang, Ren and Sun, "Deep Residual Learning for Image
  Recognition", CVPR 2016 (arXiv:1512.03385);
* Wide ResNet-50-2: Zagoruyko and Komodakis, "Wide Residual Networks", BMVC 2016
  (arXiv:1605.07146), its ImageNet bottleneck network with twice the inner width;
* ResNeXt-50 32x4d: Xie, Girshick, Dollar, Tu and He, "Aggregated Residual
  Transformations for Deep Neural Networks", CVPR 2017 (arXiv:1611.05431).

Batch norm after every convolution and He initialisation, as the ResNet paper has them
(torchvision's builders do both; its `zero_init_residual` stays off, as in the paper).
"""

from __future__ import annotations

from torch import nn

from alexnet.models.registry import register, torchvision_model

RESNET = "He, Zhang, Ren, Sun: Deep Residual Learning for Image Recognition, CVPR 2016"
# Section 3.4: batch 256, lr 0.1 divided by 10 when the error plateaus, up to 60e4
# iterations (120 epochs of ImageNet), weight decay 1e-4, momentum 0.9, no dropout. One lr
# and one weight decay for every parameter, as fb.resnet.torch (the code the ResNeXt
# paper trains with) applies them: the paper says nothing of biases or batch norm.
RESNET_RECIPE = {"epochs": 120, "batch_size": 256, "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
                 "lr_schedule": "plateau", "bias_lr_mult": 1.0, "bias_decay": True, "norm_decay": True}
# ResNeXt section 4: batch 256, weight decay 1e-4, momentum 0.9, lr 0.1 divided by 10
# three times on fb.resnet.torch's 30-epoch steps; He initialisation. The total length
# is not given: 100 epochs, ten past the third drop.
RESNEXT_RECIPE = {**RESNET_RECIPE, "epochs": 100, "lr_schedule": "step", "lr_steps": (30, 60, 90)}


@register("resnet18", paper=RESNET, recipe=RESNET_RECIPE)
def resnet18(num_classes: int = 1000) -> nn.Module:
    return torchvision_model("resnet18", num_classes=num_classes)


@register("resnet34", paper=RESNET, recipe=RESNET_RECIPE)
def resnet34(num_classes: int = 1000) -> nn.Module:
    return torchvision_model("resnet34", num_classes=num_classes)


@register("resnet50", paper=RESNET, recipe=RESNET_RECIPE)
def resnet50(num_classes: int = 1000) -> nn.Module:
    return torchvision_model("resnet50", num_classes=num_classes)


@register("resnet101", paper=RESNET, recipe=RESNET_RECIPE)
def resnet101(num_classes: int = 1000) -> nn.Module:
    return torchvision_model("resnet101", num_classes=num_classes)


@register("resnet152", paper=RESNET, recipe=RESNET_RECIPE)
def resnet152(num_classes: int = 1000) -> nn.Module:
    return torchvision_model("resnet152", num_classes=num_classes)


# The paper's ImageNet section does not list its optimiser settings (it builds on
# fb.resnet.torch): the ResNet recipe, which that code's ImageNet defaults follow.
@register("wide_resnet50_2", paper="Zagoruyko, Komodakis: Wide Residual Networks, BMVC 2016",
          recipe=RESNET_RECIPE)
def wide_resnet50_2(num_classes: int = 1000) -> nn.Module:
    return torchvision_model("wide_resnet50_2", num_classes=num_classes)


@register("resnext50_32x4d", paper="Xie, Girshick, Dollar, Tu, He: Aggregated Residual Transformations for "
                                   "Deep Neural Networks, CVPR 2017",
          recipe=RESNEXT_RECIPE)
def resnext50_32x4d(num_classes: int = 1000) -> nn.Module:
    return torchvision_model("resnext50_32x4d", num_classes=num_classes)
