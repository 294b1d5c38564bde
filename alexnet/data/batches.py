"""Torch tensors straight from a Ray Dataset's blocks, without copying the images.

`Dataset.iter_torch_batches(batch_size=...)` re-slices the stream into fixed-size
batches. Whenever a batch spans two blocks (or two Arrow chunks of one block) it copies
every image of it into fresh memory: 150 KB per 224x224 crop. On 2 vCPUs (2026-11-22) that
copy, and the page faults of its fresh buffers, cost the consumer 40% of a core at 6,000
img/s. Here every Arrow chunk of every block becomes one batch of tensors viewing the
object store's memory; the augmentation actors yield `OUTPUT_ROWS` images at a time, each
one Arrow chunk of the call's block, so batches have that size except where a shard ends.

Training does not need this on a GPU: there `iter_torch_batches(device="cuda")` moves
each chunk to the device and joins them there, with no host copy.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pyarrow as pa
import torch
from ray.data import Dataset


def chunk_tensors(chunk: pa.RecordBatch) -> dict[str, torch.Tensor]:
    """Each column as a tensor. Tensor columns (images, offsets) are views, read-only
    memory when the block lives in the object store: convert before writing to them."""
    out = {}
    for name, column in zip(chunk.schema.names, chunk.columns, strict=True):
        if isinstance(column.type, pa.ExtensionType):  # Ray's tensor columns
            array = column.to_numpy()
        else:
            array = column.to_numpy(zero_copy_only=False)
        with warnings.catch_warnings():  # torch warns that the view is not writable
            warnings.simplefilter("ignore", UserWarning)
            out[name] = torch.as_tensor(array)
    return out


def torch_blocks(ds: Dataset, prefetch_blocks: int = 4) -> Iterator[dict[str, torch.Tensor]]:
    """Every row of `ds` once, as batches of whatever size the blocks' chunks have."""
    for table in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=prefetch_blocks):
        for chunk in table.to_batches():
            if chunk.num_rows:
                yield chunk_tensors(chunk)
