"""The last steps of the input pipeline, on the training device: uint8 -> float,
mean subtraction and the PCA offset, channels-last layout, ten-crop."""

from __future__ import annotations

import torch

from alexnet.data.augment import CROP


def to_input(images: torch.Tensor, mean: torch.Tensor, offset: torch.Tensor | None = None,
             flip: torch.Tensor | None = None) -> torch.Tensor:
    """NHWC uint8 -> NCHW float in the paper's units: 0-255 minus the training-set mean,
    plus the per-image PCA offset, mirrored where `flip` is set. The permute leaves
    memory in NHWC order, which is exactly PyTorch's channels_last layout (the select
    that mirrors keeps it)."""
    x = images.float()
    shift = -mean.view(1, 1, 1, 3)
    if offset is not None:
        shift = shift + offset.view(-1, 1, 1, 3)
    x = (x + shift).permute(0, 3, 1, 2)
    if flip is not None:  # a select over the batch: no data-dependent shape, no read-back
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    return x


def ten_crops(x: torch.Tensor, crop: int = CROP) -> torch.Tensor:
    """(B, C, H, W) -> (B * 10, C, crop, crop): four corners, centre, and their mirrors,
    image-major so that ``.view(B, 10, ...)`` groups each image's crops."""
    _, _, h, w = x.shape
    starts = [(0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop),
              ((h - crop) // 2, (w - crop) // 2)]
    crops = [x[:, :, y:y + crop, x0:x0 + crop] for y, x0 in starts]
    crops += [c.flip(3) for c in crops]
    return torch.stack(crops, 1).flatten(0, 1)
