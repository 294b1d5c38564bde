"""The training input's work on a few whole shards, without Ray: read them row group by
row group, draw each row group's crops from its own seeded stream, and send the rows out
in a seeded random order. The Ray Data actors (`alexnet.data.pipeline.ShardAugment`) and
the GPU check's plain loader (`alexnet.data.local`) both run this code.

Why the rows are shuffled here. Preparation writes the training rows in one fixed random
order, and each epoch takes the shards in a new order (`randomize_block_order`), so
without more mixing a batch would hold the same run of neighbouring rows every epoch.
Training used to mix them with `iter_torch_batches(local_shuffle_buffer_size=4 * batch)`,
which gathers every row of every batch into fresh memory on the training worker's host
(150 KB per image) and mixes only within four batches. Here the call's rows leave the
actor in a random order over the whole call (two shards: ~1,440 digits or ~1,800
photo-like images), at the price of an index: the rows are decoded in that order,
straight into the output block, so no image is copied once more (docs/performance.md, "The iterator training uses").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa

from alexnet.data.augment import Draws, TrainAugment
from alexnet.seeding import augment_rng, shuffle_rng
from alexnet.store import parquet_file

SHARDS_PER_CALL = 2  # shards each training actor call reads, augments and sends as one block


def read_row_groups(batch: dict[str, Sequence[str]], columns: list[str]) -> Iterator[pa.Table]:
    """Stream shard files one row group at a time (local paths, NFS, s3://, gs://)."""
    for path in batch["path"]:
        with parquet_file(path) as pf:
            for i in range(pf.num_row_groups):
                yield pf.read_row_group(i, columns=columns)


def binary_views(column: pa.ChunkedArray) -> list[memoryview]:
    """Each value of a binary column as a view of Arrow's own buffer. Turning them into
    Python bytes (``to_numpy``) copies every JPEG once more and allocates an object per
    image: ~3 us per image on digits, ~10 on photo-like JPEGs, all of it in the actors.
    A null value is an empty view, which fails to decode and is counted like any corrupt
    image."""
    views: list[memoryview] = []
    for chunk in column.chunks:
        _, offsets, data = chunk.buffers()
        width = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
        ends = np.frombuffer(offsets, width)[chunk.offset:chunk.offset + len(chunk) + 1].tolist()
        memory = memoryview(data).cast("B") if data is not None else memoryview(b"")
        views += [memory[a:b] for a, b in zip(ends[:-1], ends[1:], strict=True)]
    return views


class ShardsAugment(TrainAugment):
    """Augments the rows of a few shards, in blocks of at most `out_rows`.

    With a `seed`, each row group's crops, flips and PCA offsets come from a stream of
    their own (`alexnet.seeding.augment_rng`: the seed, the epoch, the row group's first
    image), and the order the rows leave in from another (`shuffle_rng`: the seed, the
    epoch, the call's first image): they differ between epochs and are the same whenever
    that epoch is run again, whichever process gets the shards, and shuffling never
    changes an image's crop. Without a seed, both come from fresh OS entropy. With
    `shuffle` off the rows leave in the shards' order. With `decode` off the rows leave
    as JPEGs with their random choices (`TrainAugment.select`), for the training worker
    to decode on its device (`--decode gpu`): the same rows, order and crops."""

    def __init__(self, *args, shuffle: bool = True, decode: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shuffle = shuffle
        self.finish = self.apply if decode else self.select

    def augment_shards(self, paths: Sequence[str], epoch: int = 0) -> Iterator[dict[str, np.ndarray]]:
        images: list[memoryview] = []
        labels: list[np.ndarray] = []
        draws: list[Draws] = []
        first = None
        for table in read_row_groups({"path": paths}, ["image", "label", "index"]):
            if not table.num_rows:
                continue
            index = int(table.column("index")[0].as_py())
            first = index if first is None else first
            images += binary_views(table.column("image"))
            labels.append(table.column("label").to_numpy())
            rng = self.rng if self.seed is None else augment_rng(self.seed, epoch, index)
            draws.append(self.draw(rng, table.num_rows))
        if first is None:
            return
        label, drawn, n = np.concatenate(labels), Draws.concat(draws), len(images)
        if not self.shuffle:
            order = np.arange(n)
        else:
            order = (self.rng if self.seed is None else shuffle_rng(self.seed, epoch, first)).permutation(n)
        for start in range(0, n, self.out_rows):
            rows = order[start:start + self.out_rows]
            yield self.finish([images[i] for i in rows.tolist()], label[rows], drawn[rows])
