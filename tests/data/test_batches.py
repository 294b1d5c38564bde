"""Zero-copy torch batches from the real training pipeline on the tiny prepared dataset."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import ray
import torch

from alexnet.data import manifest as mf
from alexnet.data.augment import CROP
from alexnet.data.batches import torch_blocks
from alexnet.data.pipeline import DataResources, train_dataset


def test_every_training_row_arrives_once_as_uint8_tensors(ray_session, tiny_data: Path) -> None:
    manifest, _ = mf.load(tiny_data)
    res = DataResources(augment_actors=1, augment_cpus=0.25, read_cpus=0.25)
    batches = list(torch_blocks(train_dataset(str(tiny_data), manifest, res, seed=0)))
    images = sum(len(b["image"]) for b in batches)
    assert images == manifest.splits["train"].images
    first = batches[0]
    assert first["image"].dtype == torch.uint8 and first["image"].shape[1:] == (CROP, CROP, 3)
    assert first["offset"].shape == (len(first["image"]), 3) and first["flip"].dtype == torch.bool
    labels = torch.cat([b["label"] for b in batches]).numpy()
    expected = pq.read_table(manifest.shard_paths(str(tiny_data), "train"), columns=["label"])
    assert sorted(labels.tolist()) == sorted(expected.column("label").to_pylist())


def test_tensor_columns_keep_their_shape_and_values(ray_session) -> None:
    images = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    ds = ray.data.from_numpy(images)  # one block: column "data", a tensor column
    (batch,) = list(torch_blocks(ds))
    assert torch.equal(batch["data"], torch.from_numpy(images))
