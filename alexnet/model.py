"""The network of Krizhevsky, Sutskever and Hinton (2012), section 3.

Two choices the paper leaves open are fixed here and documented in docs/model.md:

* Input 224x224 with padding 2 in conv1 (as tensorpack does), so that the 224 crops the
  paper describes give the 55x55 maps of its figure 2.
* LRN as written in the paper's equation (alpha multiplies the plain sum of squares).
  Krizhevsky's own cuda-convnet code divides alpha by n; `lrn="cuda-convnet"` gives that.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import torch
from torch import nn

LRNConvention = Literal["paper", "cuda-convnet"]
BiasInit = Literal["paper", "caffe"]

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


def local_response_norm(convention: LRNConvention = "paper") -> LocalResponseNorm:
    """Section 3.3's normalisation. The paper's equation multiplies the plain sum of
    squares by alpha; Krizhevsky's cuda-convnet code divides alpha by n."""
    if convention == "paper":
        return LocalResponseNorm(alpha=LRN_ALPHA)
    if convention == "cuda-convnet":
        return LocalResponseNorm(alpha=LRN_ALPHA / LRN_SIZE)
    raise ValueError(f"lrn must be 'paper' or 'cuda-convnet', got {convention!r}")


def paper_classifier(num_classes: int, dropout: float) -> nn.Sequential:
    """fc6-fc8 over pool5's 256x6x6 maps, AlexNet's and ZFNet's alike.

    Section 4.2: dropout on the outputs of fc6 and fc7, after their ReLU, as in Caffe's
    bvlc_alexnet; pool5 is never dropped (torchvision's layout drops pool5 and fc6 and
    leaves fc7 intact). Named layers, so a checkpoint's keys say which layer they are."""
    return nn.Sequential(OrderedDict(
        flatten=nn.Flatten(),
        fc6=nn.Linear(256 * 6 * 6, 4096),
        relu6=nn.ReLU(inplace=True),
        drop6=nn.Dropout(dropout),
        fc7=nn.Linear(4096, 4096),
        relu7=nn.ReLU(inplace=True),
        drop7=nn.Dropout(dropout),
        fc8=nn.Linear(4096, num_classes),
    ))


class AlexNet(nn.Module):
    """AlexNet with the two-GPU split expressed as grouped convolutions.

    `grouped=True` is the paper's network (60,965,224 parameters for 1000 classes):
    conv2, conv4 and conv5 only see the kernel maps of their own half. `grouped=False`
    is the common single-device variant (62,378,344 parameters).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        grouped: bool = True,
        lrn: LRNConvention = "paper",
        bias_init: BiasInit = "paper",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        g = 2 if grouped else 1
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4, padding=2),  # conv1 -> 55x55
            nn.ReLU(inplace=True),
            local_response_norm(lrn),
            nn.MaxPool2d(kernel_size=3, stride=2),  # -> 27x27
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=g),  # conv2
            nn.ReLU(inplace=True),
            local_response_norm(lrn),
            nn.MaxPool2d(kernel_size=3, stride=2),  # -> 13x13
            nn.Conv2d(256, 384, kernel_size=3, padding=1),  # conv3 sees both halves
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=g),  # conv4
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=g),  # conv5
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # -> 6x6
        )
        self.classifier = paper_classifier(num_classes, dropout)
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
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    one_biased = {id(convs[i]) for i in (1, 3, 4)} | {id(fcs[0]), id(fcs[1])}
    positive_bias = 1.0 if bias_init == "paper" else 0.1
    for layer in convs + fcs:
        std = 0.005 if bias_init == "caffe" and layer in fcs[:2] else 0.01
        nn.init.normal_(layer.weight, mean=0.0, std=std)
        nn.init.constant_(layer.bias, positive_bias if id(layer) in one_biased else 0.0)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
