"""A benchmark set with the JPEG statistics of photographs, from what ships offline.

The embedded digits decode in ~110 us at 256x256 (flat paper, sharp strokes), far faster
than ImageNet photos, so fixed per-image costs of the pipeline weigh several times more
on them than they would on ImageNet. This set cuts windows of varied position, scale and
orientation out of scikit-learn's two sample photographs (china.jpg, flower.jpg; one
class each), at ImageNet's typical 500x375, so that the benchmark can also be run on
photo-like JPEGs. It is for throughput only: two photographs teach no classifier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

SIZE = (500, 375)  # ImageNet's most common width x height
VAL_EVERY = 10  # every tenth window goes to val


def export_photos(root: str | Path, images: int, seed: int = 0) -> dict[str, int]:
    """Write `images` windows as train/<wnid>/*.JPEG and val/<wnid>/*.JPEG under `root`."""
    root, rng = Path(root), np.random.default_rng(seed)
    sample = load_sample_images()
    photos = [Image.fromarray(img) for img in sample.images]
    counts = {"train": 0, "val": 0}
    for i in range(images):
        label = i % len(photos)
        photo = photos[label]
        w, h = photo.size
        scale = rng.uniform(0.4, 1.0)
        cw, ch = int(w * scale), int(w * scale * SIZE[1] / SIZE[0])
        ch = min(ch, h)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        window = photo.crop((x, y, x + cw, y + ch)).resize(SIZE, Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            window = window.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        split = "val" if i % VAL_EVERY == VAL_EVERY - 1 else "train"
        folder = root / split / f"p{label:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        window.save(folder / f"photo_{i:06d}.JPEG", quality=int(rng.integers(75, 96)))
        counts[split] += 1
    return counts
