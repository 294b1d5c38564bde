"""How much of a GPU a training step uses: FLOPs per image against the device's bf16 peak.

Images per second alone does not say whether a step is fast; images per second times the
FLOPs one image costs, over the tensor cores' peak, does. FLOPs are counted by torch's own
`FlopCounterMode` over a real forward pass (convolutions and matrix multiplies, 2 FLOPs per
multiply-add), so grouped convolutions count what they really compute.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from NVIDIA's data sheets, matched
# in order against `torch.cuda.get_device_name()`. Anything else needs --peak-tflops.
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


def bf16_peak_tflops(device_name: str) -> float | None:
    """The data-sheet dense bf16 peak for a CUDA device name, or None when not known."""
    for key, tflops in BF16_PEAK_TFLOPS:
        if key in device_name:
            return tflops
    return None


def forward_flops_per_image(model: torch.nn.Module, image_size: int = 224, device: str | torch.device = "cpu") -> int:
    """FLOPs of one image's forward pass (2 per multiply-add). `device` is the model's:
    on "meta" nothing is computed, so even a VGG-19 is counted at once."""
    return _flops(model, torch.randn(1, 3, image_size, image_size, device=device))


def training_flops_per_image(model: torch.nn.Module, image_size: int = 224,
                             device: str | torch.device = "cpu") -> int:
    """FLOPs of one image's forward and backward pass (the optimiser step is negligible).

    Backward computes a weight gradient and an input gradient per layer, each costing what
    the layer's forward costs; the first layer's input gradient is the image's, which
    nothing needs. So 3 x forward, less the first layer's forward. (torch 2.14's
    `FlopCounterMode` counts grouped convolutions' backward without dividing by the groups,
    so it is only trusted with forward passes here.)
    """
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    inputs: list[torch.Tensor] = []
    hook = first.register_forward_pre_hook(lambda _, args: inputs.append(args[0]))
    try:
        forward = _flops(model, torch.randn(1, 3, image_size, image_size, device=device))
    finally:
        hook.remove()
    return 3 * forward - _flops(first, inputs[0])


def _flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    return counter.get_total_flops()


def peak_fraction(img_per_sec: float, flops_per_image: int, peak_tflops: float) -> float:
    """The fraction of the device's peak that `img_per_sec` training steps reach."""
    return img_per_sec * flops_per_image / (peak_tflops * 1e12)
