"""The network of Krizhevsky, Sutskever and Hinton (2012), section 3.

Two choices the paper leaves open are fixed here and documented in docs/model.md:

* Input 224x224 with padding 2 in conv1 (as tensorpack does), so that the 224 crops the
  paper describes give the 55x55 maps of its figure 2.
* LRN as written in the paper's equation (alpha multiplies the plain sum of squares).
  Krizhevsky's own cuda-convnet code divides alpha by n; `lrn="cuda-convnet"` gives that.

The paper argues for each design choice with a measured difference; each has a switch
here, off the paper's default, so that its ablations can be rerun (docs/ablations.md):
the non-linearity (section 3.1), LRN (3.3), overlapping pooling (3.4), the depth
(section 7: a middle convolutional layer left out) and the one-GPU net with half the
kernels (3.2). A switch keeps the layers' places in `features`, so every variant's
checkpoint keys name the same layers.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import torch
from torch import nn

LRNConvention = Literal["paper", "cuda-convnet", "none"]
BiasInit = Literal["paper", "caffe"]
Activation = Literal["relu", "tanh"]
Pooling = Literal["overlapping", "plain"]
Kernels = Literal["full", "half"]

LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0


def channel_window_sum(x: torch.Tensor, size: int) -> torch.Tensor:
    """Sum over the `size` channels centred on each channel (zero beyond the edges)."""
    channels, half = x.shape[1], size // 2
    padded = nn.functional.pad(x, (0, 0, 0, 0, half, half))
    out = padded[:, :channels].clone()
    for i in range(1, size):
        out += padded[:, i:i + channels]
    return out


class _LRNFunction(torch.autograd.Function):
    """LRN with a hand-written backward: autograd's generic one for this expression
    makes several more full passes over conv1's large activation maps.

    y_i = x_i s_i^-b with s_i = k + a sum_{j in W(i)} x_j^2, so
    dL/dx_j = g_j s_j^-b - 2ab x_j sum_{i in W(j)} g_i x_i s_i^(-b-1)  (W is symmetric).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
        scale = channel_window_sum(x * x, size).mul_(alpha).add_(k)
        inv = scale.rsqrt() * scale.rsqrt().sqrt() if beta == 0.75 else scale.pow(-beta)
        ctx.save_for_backward(x, scale, inv)
        ctx.size, ctx.alpha, ctx.beta = size, alpha, beta
        return x * inv

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, scale, inv = ctx.saved_tensors
        inner = channel_window_sum(grad * x * inv / scale, ctx.size)
        dx = grad * inv - (2 * ctx.alpha * ctx.beta) * x * inner
        return dx, None, None, None, None


class LocalResponseNorm(nn.Module):
    """b_i = a_i / (k + alpha * sum of a_j^2 over the n channels around i)^beta.

    The same function as ``nn.LocalResponseNorm(n, alpha * n, beta, k)``, at about a
    third of its cost on CPU, where it otherwise takes most of AlexNet's training step.
    """

    def __init__(self, size: int = LRN_SIZE, alpha: float = LRN_ALPHA, beta: float = LRN_BETA,
                 k: float = LRN_K) -> None:
        super().__init__()
        if size % 2 != 1:
            raise ValueError(f"LRN size must be odd, got {size}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LRNFunction.apply(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


def local_response_norm(convention: LRNConvention = "paper") -> nn.Module:
    """Section 3.3's normalisation. The paper's equation multiplies the plain sum of
    squares by alpha; Krizhevsky's cuda-convnet code divides alpha by n; "none" leaves it
    out (the ablation of its claimed 1.4 / 1.2 points)."""
    if convention == "paper":
        return LocalResponseNorm(alpha=LRN_ALPHA)
    if convention == "cuda-convnet":
        return LocalResponseNorm(alpha=LRN_ALPHA / LRN_SIZE)
    if convention == "none":
        return nn.Identity()
    raise ValueError(f"lrn must be 'paper', 'cuda-convnet' or 'none', got {convention!r}")


def activation_layer(activation: Activation = "relu") -> nn.Module:
    """Section 3.1: ReLU, the non-saturating unit, or tanh, the saturating one whose
    training error falls six times more slowly in its figure 1."""
    if activation == "relu":
        return nn.ReLU(inplace=True)
    if activation == "tanh":
        return nn.Tanh()
    raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")


def max_pool(pooling: Pooling = "overlapping", ceil_mode: bool = False) -> nn.MaxPool2d:
    """Section 3.4: 3x3 windows at stride 2 overlap; "plain" is the 2x2 at stride 2 it
    compares them with (the same output sizes: 55 -> 27 -> 13 -> 6)."""
    if pooling not in ("overlapping", "plain"):
        raise ValueError(f"pooling must be 'overlapping' or 'plain', got {pooling!r}")
    return nn.MaxPool2d(kernel_size=3 if pooling == "overlapping" else 2, stride=2, ceil_mode=ceil_mode)


def paper_classifier(num_classes: int, dropout: float, activation: Activation = "relu",
                     in_maps: int = 256) -> nn.Sequential:
    """fc6-fc8 over pool5's `in_maps` x 6 x 6 maps, AlexNet's and ZFNet's alike.

    Section 4.2: dropout on the outputs of fc6 and fc7, after their ReLU, as in Caffe's
    bvlc_alexnet; pool5 is never dropped (torchvision's layout drops pool5 and fc6 and
    leaves fc7 intact). Named layers, so a checkpoint's keys say which layer they are."""
    return nn.Sequential(OrderedDict(
        flatten=nn.Flatten(),
        fc6=nn.Linear(in_maps * 6 * 6, 4096),
        relu6=activation_layer(activation),
        drop6=nn.Dropout(dropout),
        fc7=nn.Linear(4096, 4096),
        relu7=activation_layer(activation),
        drop7=nn.Dropout(dropout),
        fc8=nn.Linear(4096, num_classes),
    ))


class AlexNet(nn.Module):
    """AlexNet with the two-GPU split expressed as grouped convolutions.

    `grouped=True` is the paper's network (60,965,224 parameters for 1000 classes):
    conv2, conv4 and conv5 only see the kernel maps of their own half. `grouped=False`
    is the common single-device variant (62,378,344 parameters).

    The ablation switches, each off the paper's default: `activation` "tanh" (section
    3.1), `lrn` "none" (3.3), `pooling` "plain" (2x2 windows, 3.4), `remove_conv` 3 or 4
    (a middle layer left out, section 7; the next layer then reads the maps before it),
    and `kernels` "half": the one-GPU net of section 3.2, with half the kernels in conv1
    to conv4 and conv5 and the fully connected layers kept, as its footnote says (pass
    `grouped=False` with it: one GPU has no split).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        grouped: bool = True,
        lrn: LRNConvention = "paper",
        bias_init: BiasInit = "paper",
        dropout: float = 0.5,
        activation: Activation = "relu",
        pooling: Pooling = "overlapping",
        remove_conv: int = 0,
        kernels: Kernels = "full",
    ) -> None:
        super().__init__()
        if remove_conv not in (0, 3, 4):
            raise ValueError(f"remove_conv must be 0 (none), 3 or 4, got {remove_conv}")
        if kernels not in ("full", "half"):
            raise ValueError(f"kernels must be 'full' or 'half', got {kernels!r}")
        g = 2 if grouped else 1
        c1, c2, c3, c4 = (96, 256, 384, 384) if kernels == "full" else (48, 128, 192, 192)
        c4_in = c2 if remove_conv == 3 else c3
        c5_in = c4_in if remove_conv == 4 else c4
        conv3 = nn.Conv2d(c2, c3, kernel_size=3, padding=1)  # conv3 sees both halves
        conv4 = nn.Conv2d(c4_in, c4, kernel_size=3, padding=1, groups=g)
        # Named by role, for the initialisation; the layers are registered in `features`.
        self.convs = OrderedDict(
            conv1=nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=2),  # -> 55x55
            conv2=nn.Conv2d(c1, c2, kernel_size=5, padding=2, groups=g),
            conv3=conv3 if remove_conv != 3 else None,
            conv4=conv4 if remove_conv != 4 else None,
            conv5=nn.Conv2d(c5_in, 256, kernel_size=3, padding=1, groups=g),
        )

        def unit(conv: nn.Module | None) -> list[nn.Module]:  # a conv and its non-linearity, or two placeholders
            return [conv, activation_layer(activation)] if conv is not None else [nn.Identity(), nn.Identity()]

        self.features = nn.Sequential(
            *unit(self.convs["conv1"]), local_response_norm(lrn), max_pool(pooling),  # -> 27x27
            *unit(self.convs["conv2"]), local_response_norm(lrn), max_pool(pooling),  # -> 13x13
            *unit(self.convs["conv3"]),
            *unit(self.convs["conv4"]),
            *unit(self.convs["conv5"]), max_pool(pooling),  # -> 6x6
        )
        self.classifier = paper_classifier(num_classes, dropout, activation)
        init_paper_weights(self, bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def init_paper_weights(model: AlexNet, bias_init: BiasInit = "paper") -> None:
    """Section 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7, else 0.

    The paper's bias 1 "accelerates the early stages of learning by providing the ReLUs
    with positive inputs", but Caffe's reproduction found it left the loss flat and used
    0.1 (and std 0.005 in fc6/fc7); `bias_init="caffe"` gives that.
    """
    if bias_init not in ("paper", "caffe"):
        raise ValueError(f"bias_init must be 'paper' or 'caffe', got {bias_init!r}")
    fcs = [model.classifier.fc6, model.classifier.fc7, model.classifier.fc8]
    one_biased = [model.convs[c] for c in ("conv2", "conv4", "conv5")] + fcs[:2]
    positive_bias = 1.0 if bias_init == "paper" else 0.1
    for layer in [c for c in model.convs.values() if c is not None] + fcs:
        std = 0.005 if bias_init == "caffe" and any(layer is f for f in fcs[:2]) else 0.01
        nn.init.normal_(layer.weight, mean=0.0, std=std)
        nn.init.constant_(layer.bias, positive_bias if any(layer is b for b in one_biased) else 0.0)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
