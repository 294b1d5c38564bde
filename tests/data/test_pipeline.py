"""The training actor's own work, called in this process on real prepared shards."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alexnet.data import manifest as mf
from alexnet.data.augment import CROP
from alexnet.data.pipeline import ShardAugment, binary_views


def test_shard_augment_yields_every_row_of_its_shards_in_blocks(tiny_data: Path) -> None:
    manifest, _ = mf.load(tiny_data)
    paths = manifest.shard_paths(str(tiny_data), "train")
    aug = ShardAugment(manifest.pca_eigval, manifest.pca_eigvec, seed=0, out_rows=5)
    blocks = list(aug({"path": np.array(paths, dtype=object)}))
    assert all(1 <= len(b["image"]) <= 5 for b in blocks)
    expected = [label for p in paths for label in pq.read_table(p, columns=["label"]).column("label").to_pylist()]
    assert np.concatenate([b["label"] for b in blocks]).tolist() == expected
    assert all(b["image"].shape[1:] == (CROP, CROP, 3) and b["valid"].all() for b in blocks)


def test_binary_views_match_the_values_of_sliced_chunked_and_large_columns() -> None:
    chunks = [pa.array([b"ab", None, b"", b"xyz"], pa.binary()), pa.array([b"q", b"rs", b"tuv"], pa.large_binary())]
    for column in (pa.chunked_array(chunks[:1]), pa.chunked_array(chunks[:1]).slice(1, 3),
                   pa.chunked_array([chunks[1].slice(1)]), pa.chunked_array([pa.array([], pa.binary())])):
        assert [bytes(v) for v in binary_views(column)] == [v or b"" for v in column.to_pylist()]
