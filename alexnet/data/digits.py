"""The embedded default dataset: scikit-learn's 1,797 real 8x8 digit scans, written out
in ImageNet's class-folder layout so that exactly the same preparation job reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

VAL_FRACTION = 0.2
SPLIT_SEED = 0
PIXELS = 64  # each 8x8 scan is upscaled 8x with hard edges so JPEG keeps the strokes


def wnid(digit: int) -> str:
    """Folder names in the shape of ImageNet's wnids, so the layout looks the same."""
    return f"d{digit:08d}"


def class_names() -> dict[str, str]:
    """Each digit's folder name and what a person calls it."""
    return {wnid(d): f"digit {d}" for d in range(10)}


def export_digits(root: str | Path) -> dict[str, int]:
    """Write train/<wnid>/*.JPEG and val/<wnid>/*.JPEG under `root` (fixed 80/20 split)."""
    root = Path(root)
    digits = load_digits()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(digits.images))
    n_val = round(len(order) * VAL_FRACTION)
    split_of = {int(i): ("val" if k < n_val else "train") for k, i in enumerate(order)}
    counts = {"train": 0, "val": 0}
    for i, (img, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        split = split_of[i]
        folder = root / split / wnid(int(target))
        folder.mkdir(parents=True, exist_ok=True)
        ink = (255 - img * (255 / 16)).astype(np.uint8)  # dark ink on light paper, like a scan
        big = Image.fromarray(ink, mode="L").resize((PIXELS, PIXELS), Image.Resampling.NEAREST)
        big.save(folder / f"digit_{i:05d}.JPEG", quality=95)
        counts[split] += 1
    return counts
