"""Image codecs: Pillow for reading anything once, libjpeg-turbo (simplejpeg) after that.

Where simplejpeg is not installed (a GPU machine given only the project's files, for
`jobs/gpu_check.py`), JPEGs are decoded and encoded with Pillow instead: the same pixels
to within a JPEG decoder's rounding, and slower. `JPEG_CODEC` says which is in use; the
GPU check reports it, and `requirements.txt` always installs simplejpeg.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

try:
    import simplejpeg
except ImportError:  # see the module's docstring; said once per process, so no run falls back unseen
    simplejpeg = None
    warnings.warn("simplejpeg is not installed: JPEGs are decoded and encoded with Pillow (slower; pixels within "
                  "a decoder's rounding). Install requirements.txt to train as the benchmarks measured",
                  RuntimeWarning, stacklevel=2)

JPEG_CODEC = "simplejpeg" if simplejpeg is not None else "pillow"

SHARD_SIZE = 256  # the paper's 256x256 images, which training crops to 224


def load_as_rgb_square(data: bytes, size: int = SHARD_SIZE) -> np.ndarray:
    """Decode any image Pillow reads, resize the shorter side to `size`, crop the centre.

    Grayscale, CMYK, palette and PNG data (whatever its file name says) become RGB.
    Raises on data that is not a decodable image; callers record the reason.
    """
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (size, size))  # JPEG: let libjpeg decode at a reduced scale
        img = img.convert("RGB")
        w, h = img.size
        scale = size / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        img = img.crop((left, top, left + size, top + size))
        return np.asarray(img, dtype=np.uint8)


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    if simplejpeg is None:
        return pillow_encode_jpeg(rgb, quality)
    return simplejpeg.encode_jpeg(np.ascontiguousarray(rgb), quality=quality, colorspace="RGB")


def pillow_encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """`encode_jpeg` where simplejpeg is missing."""
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def pillow_decode_jpeg(data: bytes) -> np.ndarray:
    """`decode_jpeg` where simplejpeg is missing: a new array per image."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def decode_buffer(nbytes: int = SHARD_SIZE * SHARD_SIZE * 3) -> np.ndarray:
    """A reusable decode target that starts 16 bytes past a 32-byte boundary.

    Measured on this project's shards: into a 32-byte-aligned buffer libjpeg-turbo's
    decode took 121 us instead of 106 us, and copying a crop out of it right after took
    50 us instead of 10 us (the decoded pixels had not stayed in the cache). Whether
    malloc returns such an address is chance, which had made augmentation throughput
    jump by 30% between runs."""
    raw = np.empty(nbytes + 32, np.uint8)
    start = (16 - raw.ctypes.data) % 32
    return raw[start:start + nbytes]


def decode_jpeg(data: bytes, buffer: np.ndarray | None = None) -> np.ndarray:
    """Fastest decode the project has: libjpeg-turbo, fast DCT and upsampling. With a
    `buffer` (reused across calls) no new image array is allocated per decode."""
    if simplejpeg is None:
        return pillow_decode_jpeg(data)
    return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=True, buffer=buffer)
