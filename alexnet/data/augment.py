"""The paper's augmentation (section 4.1), on uint8 arrays, for Ray Data actors.

The crop is an array view, copied once into the output batch. The horizontal flip and
the PCA colour jitter are each one value per image (a bit; an RGB offset added to every
pixel), so they travel beside the batch and are applied on the training device during
normalisation (`alexnet.data.device`). Mirroring on the CPU would cost more than the
JPEG decode itself (a negative-stride copy); batches stay uint8 until the device.

An actor call takes the JPEGs of a few whole shards (`alexnet.data.shards.ShardsAugment`),
draws every image's crop, flip and offset first (`Draws`), decodes the rows in a seeded
random order over the call, and yields its output in batches of `OUTPUT_ROWS` images: as
large as a batch can be while the allocator still reuses the same heap memory for every
batch instead of mapping, zero-filling and unmapping fresh pages each time (see
`reuse_freed_memory`). Ray Data
joins the batches of one call into one block (`pipeline.TRAIN_BLOCK_BYTES`), so Ray's
fixed cost per block (the driver's bookkeeping, the raylet, object creation) is paid
once per call. On 2 vCPUs (2026-11-22) 212-row batches delivered 8-15% more images per
second than 128-row ones, and 424-row batches, which glibc maps fresh each time, were no
faster than 128.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from alexnet.data.images import SHARD_SIZE, decode_buffer, decode_jpeg
from alexnet.memory import MMAP_THRESHOLD, reuse_freed_memory

CROP = 224
CROP_BYTES = CROP * CROP * 3  # one uint8 RGB crop as the actors send it
PCA_STD = 0.1  # alpha_i ~ N(0, 0.1), section 4.1
OUTPUT_ROWS = MMAP_THRESHOLD // CROP_BYTES  # 222 crops per output block: 31.9 MB, just under it

EvalCrop = Literal["center", "ten"]


@dataclass(frozen=True)
class PCAJitter:
    """RGB offsets ``eigvec @ (alpha * eigval)`` in 0-255 units, one per image."""

    eigval: np.ndarray  # (3,), covariance of RGB in [0, 1]
    eigvec: np.ndarray  # (3, 3), columns are eigenvectors
    std: float = PCA_STD

    def offsets(self, rng: np.random.Generator, n: int) -> np.ndarray:
        alpha = rng.normal(0.0, self.std, size=(n, 3))
        return (255.0 * (alpha * self.eigval) @ self.eigvec.T).astype(np.float32)


def crop_at(img: np.ndarray, origin: Sequence[float], crop: int = CROP) -> np.ndarray:
    """A view: the `crop` x `crop` window at `origin` (fractions in [0, 1)), every
    position of this image equally likely for uniform fractions."""
    h, w = img.shape[:2]
    y, x = int(origin[0] * (h - crop + 1)), int(origin[1] * (w - crop + 1))
    return img[y:y + crop, x:x + crop]


def random_crop(img: np.ndarray, rng: np.random.Generator, crop: int = CROP) -> np.ndarray:
    """A view: a random `crop` x `crop` window, every position equally likely."""
    return crop_at(img, rng.random(2), crop)


def center_crop(img: np.ndarray, crop: int = CROP) -> np.ndarray:
    h, w = img.shape[:2]
    y, x = (h - crop) // 2, (w - crop) // 2
    return img[y:y + crop, x:x + crop]


def decode_into(out: np.ndarray, valid: np.ndarray, images: Sequence,
                place: Callable[[np.ndarray, int], np.ndarray]) -> None:
    """Decode each JPEG and copy `place(decoded, i)` into `out[i]`.

    A row that fails to decode becomes zeros and is marked invalid instead of raising: the
    training loop leaves it out of the loss and counts it (metric ``bad_images``).
    """
    scratch = decode_buffer()  # every shard image is 256x256
    for i, data in enumerate(images):
        try:
            out[i] = place(decode_jpeg(data, scratch), i)
        except Exception:  # noqa: BLE001 - corrupt rows are counted downstream
            out[i] = 0
            valid[i] = False


@dataclass(frozen=True)
class Draws:
    """One presentation's random choices for n images: where each crop starts (as a
    fraction of the positions the image allows), its PCA offset and its flip bit. Drawn
    before any image is decoded, so that the rows can then be decoded in any order (an
    actor call shuffles them) and every row draws the same whether or not another row
    fails to decode."""

    origin: np.ndarray  # (n, 2) in [0, 1): top, left
    offset: np.ndarray  # (n, 3) float32, 0-255 units
    flip: np.ndarray  # (n,) bool

    def __getitem__(self, rows: slice | np.ndarray) -> Draws:
        return Draws(self.origin[rows], self.offset[rows], self.flip[rows])

    @staticmethod
    def concat(parts: list[Draws]) -> Draws:
        return Draws(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("origin", "offset", "flip")))


class TrainAugment:
    """Ray Data actor: decode, random 224 crop; a flip bit (p = 0.5) and a PCA offset
    per image, applied on the device. Called with a batch, it yields blocks of at most
    `out_rows` images."""

    def __init__(self, eigval: list[float], eigvec: list[list[float]], seed: int | None = None,
                 pca_std: float = PCA_STD, crop: int = CROP, out_rows: int = OUTPUT_ROWS,
                 crop_flip: bool = True) -> None:
        self.jitter = PCAJitter(np.asarray(eigval, np.float64), np.asarray(eigvec, np.float64), pca_std)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.crop = crop
        self.out_rows = out_rows
        self.crop_flip = crop_flip
        reuse_freed_memory()

    def draw(self, rng: np.random.Generator, n: int) -> Draws:
        """The random choices for `n` images, from `rng`. Without `crop_flip` every crop is
        the centre one and none is mirrored (the ablation of section 4.1's translations
        and reflections); the same stream is drawn, so the colour offsets stay the same."""
        draws = Draws(rng.random((n, 2)), self.jitter.offsets(rng, n), rng.random(n) < 0.5)
        if not self.crop_flip:
            draws = Draws(np.full_like(draws.origin, 0.5), draws.offset, np.zeros_like(draws.flip))
        return draws

    def __call__(self, batch: dict[str, np.ndarray],
                 rng: np.random.Generator | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Augment `batch` with `rng` (default: the actor's own stream)."""
        draws = self.draw(self.rng if rng is None else rng, len(batch["image"]))
        for start in range(0, len(batch["image"]), self.out_rows):
            rows = slice(start, start + self.out_rows)
            yield self.apply(batch["image"][rows], batch["label"][rows], draws[rows])

    def augment(self, batch: dict[str, np.ndarray], rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        return self.apply(batch["image"], batch["label"], self.draw(self.rng if rng is None else rng,
                                                                    len(batch["image"])))

    def select(self, images: Sequence, labels: np.ndarray, draws: Draws) -> dict[str, np.ndarray]:
        """The same rows and random choices as `apply`, still JPEGs: the training worker
        decodes and crops them on its device (`--decode gpu`, `alexnet.data.device.decode_batch`),
        which puts each crop exactly where `apply` would have cut it."""
        jpegs = np.empty(len(images), dtype=object)
        jpegs[:] = [bytes(im) for im in images]  # out of the shard's Arrow buffer, into the block
        return {"jpeg": jpegs, "origin": draws.origin, "label": np.asarray(labels).astype(np.int64),
                "offset": draws.offset, "flip": draws.flip}

    def apply(self, images: Sequence, labels: np.ndarray, draws: Draws) -> dict[str, np.ndarray]:
        """Decode `images` and cut each one's crop; the batch the device finishes."""
        n = len(images)
        out = np.empty((n, self.crop, self.crop, 3), np.uint8)
        valid = np.ones(n, bool)
        origins = draws.origin.tolist()  # Python floats: no numpy scalar per image
        decode_into(out, valid, images, lambda im, i: crop_at(im, origins[i], self.crop))
        return {"image": out, "label": np.asarray(labels).astype(np.int64), "offset": draws.offset,
                "flip": draws.flip, "valid": valid}


def eval_batch(batch: dict[str, np.ndarray], crop: EvalCrop = "center") -> dict[str, np.ndarray]:
    """Decode validation rows for the network. "center" sends the centre 224 crop; "ten"
    sends the whole 256 image and the ten crops are cut on the device. Which rank scores
    which rows is decided when the shards are read (`pipeline.eval_assignment`), so every
    row given here is scored."""
    images, labels = batch["image"], batch["label"]
    size = CROP if crop == "center" else SHARD_SIZE
    out = np.empty((len(images), size, size, 3), np.uint8)
    valid = np.ones(len(images), bool)
    place = (lambda im, _: center_crop(im)) if crop == "center" else (lambda im, _: im)
    decode_into(out, valid, images, place)
    return {"image": out, "label": labels.astype(np.int64), "valid": valid, "index": batch["index"]}
