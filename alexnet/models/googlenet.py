"""GoogLeNet: Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 (arXiv:1409.4842).

torchvision's builder, without weights, with its two auxiliary classifiers: in training
its output is ``(logits, aux2, aux1)`` and the loss adds each auxiliary loss at weight 0.3
(section 5: "their loss gets added to the total loss of the network with a discount
weight (the losses of the auxiliary classifiers were weighted by 0.3)"); in evaluation
only the main classifier is used, as the paper discards them at inference.
torchvision's version differs from the paper in one way: batch norm after every
convolution (the paper has none, and the LRN layers of its figure 3 are absent).
"""

from __future__ import annotations

from torch import nn

from alexnet.models.registry import register, torchvision_model

AUX_LOSS_WEIGHT = 0.3


# Section 6: asynchronous SGD with momentum 0.9, the lr decreased by 4% every 8 epochs;
# dropout 40% before the main classifier (70% in the auxiliary ones, torchvision's default).
# The paper gives no batch size, initial lr, weight decay or length: the project's defaults.
@register("googlenet", paper="Szegedy et al.: Going Deeper with Convolutions, CVPR 2015",
          options=("dropout",), aux_loss_weight=AUX_LOSS_WEIGHT,
          recipe={"momentum": 0.9, "lr_schedule": "step", "lr_steps": tuple(range(8, 90, 8)), "lr_factor": 0.96,
                  "dropout": 0.4})
def googlenet(num_classes: int = 1000, dropout: float = 0.4) -> nn.Module:
    return torchvision_model("googlenet", num_classes=num_classes, aux_logits=True, init_weights=True,
                        dropout=dropout)
