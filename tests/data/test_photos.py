"""The photo-like benchmark set: real photographs' windows in ImageNet's layout."""

from pathlib import Path

import numpy as np
from PIL import Image

from alexnet.data.photos import SIZE, export_photos


def test_photo_windows_are_distinct_jpegs_in_both_splits_and_classes(tmp_path: Path) -> None:
    counts = export_photos(tmp_path, 20)
    assert counts == {"train": 18, "val": 2}
    files = sorted(tmp_path.glob("*/*/*.JPEG"))
    assert len(files) == 20
    assert {f.parent.name for f in files} == {"p00000000", "p00000001"}
    pixels = []
    for f in files[:6]:
        with Image.open(f) as img:
            assert img.format == "JPEG" and img.size == SIZE and img.mode == "RGB"
            pixels.append(np.asarray(img, np.float32))
    assert all(np.abs(a - b).mean() > 5 for a, b in zip(pixels[:-1], pixels[1:], strict=True))  # consecutive differ
