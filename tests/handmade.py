"""A prepared data directory written by hand, for tests of what happens before Ray starts."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from alexnet.data import manifest as mf


def handmade_data(root: Path, train_images: int = 6, val_images: int = 3) -> Path:
    """A prepared directory as prepare_data.py lays it out, written directly (no Ray):
    only its structure and Parquet files matter before training starts."""
    splits = {}
    for split, n in (("train", train_images), ("val", val_images)):
        (root / split).mkdir(parents=True)
        shards = []
        for i in range(2):
            pq.write_table(pa.table({"image": [b"jpeg"] * n, "label": [0] * n}), root / split / f"part-{i}.parquet")
            shards.append(f"{split}/part-{i}.parquet")
        splits[split] = mf.SplitInfo(images=2 * n, shards=shards)
    manifest = mf.Manifest(num_classes=2, image_size=256, splits=splits, rgb_mean=mf.IMAGENET_MEAN,
                           pca_eigval=mf.IMAGENET_EIGVAL, pca_eigvec=mf.IMAGENET_EIGVEC,
                           pca_source="imagenet-constants")
    (root / mf.MANIFEST).write_text(manifest.to_json())
    (root / mf.CLASSES).write_text(json.dumps(["n00000000", "n00000001"]))
    return root
