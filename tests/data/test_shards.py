"""An actor call's own work without Ray: every row of its shards leaves once, in a seeded
order of the whole call that changes with the epoch, and shuffling never changes what an
image's crop, flip and colour offset are."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alexnet.data.augment import CROP
from alexnet.data.images import encode_jpeg
from alexnet.data.manifest import IMAGENET_EIGVAL, IMAGENET_EIGVEC
from alexnet.data.shards import ShardsAugment


def write_shards(folder: Path, shards: int, rows: int) -> list[str]:
    """`shards` shards of `rows` rows in row groups of 3; row `index` has label 1000 +
    index and an image of its own (a gradient whose level is the index)."""
    y, x = np.mgrid[0:256, 0:256]
    paths, index = [], 0
    for s in range(shards):
        ids = np.arange(index, index + rows)
        images = [encode_jpeg(np.stack([y, x, np.full_like(y, 8 * i)], -1).astype(np.uint8)) for i in ids]
        path = folder / f"shard-{s}.parquet"
        pq.write_table(pa.table({"image": pa.array(images, pa.binary()), "label": ids + 1000, "index": ids}),
                       path, row_group_size=3)
        paths.append(str(path))
        index += rows
    return paths


def call(paths: list[str], epoch: int, shuffle: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    aug = ShardsAugment(IMAGENET_EIGVAL, IMAGENET_EIGVEC, seed=seed, out_rows=4, shuffle=shuffle)
    blocks = list(aug.augment_shards(paths, epoch))
    assert all(1 <= len(b["image"]) <= 4 and b["image"].shape[1:] == (CROP, CROP, 3) for b in blocks)
    return {k: np.concatenate([b[k] for b in blocks]) for k in ("label", "image", "offset", "flip", "valid")}


def test_a_call_sends_every_row_once_in_a_seeded_order_of_the_whole_call(tmp_path: Path) -> None:
    paths = write_shards(tmp_path, shards=2, rows=10)
    first = call(paths, epoch=0)
    assert sorted(first["label"].tolist()) == list(range(1000, 1020)) and first["valid"].all()
    # mixed across the row groups and both shards, not only within them
    assert first["label"][:10].min() < 1010 <= first["label"][:10].max()
    assert np.array_equal(first["label"], call(paths, epoch=0)["label"])  # an epoch run again: the same
    assert not np.array_equal(first["label"], call(paths, epoch=1)["label"])
    assert not np.array_equal(first["label"], call(paths, epoch=0, seed=1)["label"])
    assert call(paths, epoch=0, shuffle=False)["label"].tolist() == list(range(1000, 1020))


def test_shuffling_moves_rows_but_never_changes_their_augmentation(tmp_path: Path) -> None:
    paths = write_shards(tmp_path, shards=2, rows=7)
    shuffled, ordered = call(paths, epoch=3), call(paths, epoch=3, shuffle=False)
    where = np.argsort(shuffled["label"])  # shuffled rows in label order: the unshuffled order
    for key in ("image", "offset", "flip"):
        assert np.array_equal(shuffled[key][where], ordered[key]), key
    other_epoch = call(paths, epoch=4, shuffle=False)
    assert not np.array_equal(other_epoch["offset"], ordered["offset"])
