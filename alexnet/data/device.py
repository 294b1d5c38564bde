"""The last steps of the input pipeline, on the training device: uint8 -> float,
mean subtraction and the PCA offset, channels-last layout, ten-crop; and, with
`--decode gpu`, the JPEG decode and the random crop themselves."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
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


def decode_crops(jpegs: Sequence[bytes], origins: np.ndarray, device: torch.device | str,
                 crop: int = CROP) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, valid): each JPEG decoded on `device` in one batched call
    (`torchvision.io.decode_jpeg`: nvJPEG on a GPU, libjpeg-turbo on a CPU) and cut to the
    `crop` window at its `origin` (fractions, `augment.crop_at`'s rule, so the window is
    the one the CPU path cuts), as NHWC uint8 like the actors' crops. A JPEG that does not
    decode is zeros and not valid, as on the CPU path: the batch is then decoded one image
    at a time to find it (torchvision refuses the whole batch)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():  # bytes are read-only: torch warns, and nothing here writes to them
        warnings.simplefilter("ignore", UserWarning)
        data = [torch.frombuffer(j, dtype=torch.uint8) if len(j) else torch.zeros(0, dtype=torch.uint8)
                for j in jpegs]
    try:
        decoded: list[torch.Tensor | None] = list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        decoded = [_decode_one(d, device) for d in data]
    out, valid = [], torch.ones(len(decoded), dtype=torch.bool)
    blank = None
    for i, (img, (fy, fx)) in enumerate(zip(decoded, origins.tolist(), strict=True)):
        if img is None or min(img.shape[1:]) < crop:
            valid[i] = False
            blank = torch.zeros(3, crop, crop, dtype=torch.uint8, device=device) if blank is None else blank
            out.append(blank)
            continue
        _, h, w = img.shape
        y, x = int(fy * (h - crop + 1)), int(fx * (w - crop + 1))
        out.append(img[:, y:y + crop, x:x + crop])
    if not out:
        return torch.zeros(0, crop, crop, 3, dtype=torch.uint8, device=device), valid.to(device)
    return torch.stack(out).permute(0, 2, 3, 1), valid.to(device)


def _decode_one(data: torch.Tensor, device: torch.device | str) -> torch.Tensor | None:
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return None


def decode_batch(batch: dict[str, Any], device: torch.device | str) -> dict[str, torch.Tensor]:
    """A batch of `TrainAugment.select`'s rows (JPEGs and their random choices) as the
    batch the CPU path delivers (`TrainAugment.apply`'s), on `device`."""
    images, valid = decode_crops(batch["jpeg"], np.asarray(batch["origin"]), device)
    moved = {k: torch.as_tensor(np.asarray(batch[k])).to(device, non_blocking=True)
             for k in ("label", "offset", "flip")}
    return {"image": images, **moved, "valid": valid}
