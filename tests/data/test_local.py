"""The GPU check's plain input path against the Ray one: the same shards from the same
source, and training batches of exactly the step's size."""

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from alexnet.data import local, pipeline, prepare
from alexnet.data import manifest as mf


def rows(root: Path, manifest: mf.Manifest, split: str) -> list[dict]:
    table = pq.read_table(manifest.shard_paths(str(root), split))
    return sorted(table.select(["index", "label", "wnid", "path", "image"]).to_pylist(), key=lambda r: r["index"])


def test_prepared_without_ray_the_shards_hold_the_preparation_jobs_rows(tiny_src: Path, tiny_data: Path,
                                                                        tmp_path: Path) -> None:
    assert (local.SHUFFLE_SEED, local.PARQUET_ENCODING, local.MIN_IMAGES_FOR_OWN_PCA, local.SHARDS_PER_CALL) == (
        prepare.SHUFFLE_SEED, prepare.PARQUET_ENCODING, prepare.MIN_IMAGES_FOR_OWN_PCA, pipeline.SHARDS_PER_CALL)
    plain = local.prepare_local(tiny_src, tmp_path / "plain", rows_per_shard=5, processes=1)
    ray_made, _ = mf.load(tiny_data)
    for split in ("train", "val"):
        assert rows(tmp_path / "plain", plain, split) == rows(tiny_data, ray_made, split), split
        assert plain.splits[split].images == ray_made.splits[split].images
    assert len(plain.splits["train"].shards) == -(-plain.splits["train"].images // 5)
    for key in ("rgb_mean", "pca_eigval"):
        assert np.allclose(getattr(plain, key), getattr(ray_made, key), rtol=1e-5), key
    assert np.allclose(np.abs(plain.pca_eigvec), np.abs(ray_made.pca_eigvec), atol=1e-5)  # up to sign
    assert mf.load(tmp_path / "plain")[0] == plain


def test_rebatch_passes_full_blocks_through_and_joins_only_the_short_ones() -> None:
    def block(start: int, n: int) -> dict[str, np.ndarray]:
        return {"image": np.arange(start, start + n), "label": np.arange(start, start + n) + 100}
    blocks = [block(0, 4), block(4, 3), block(7, 4), block(11, 2), block(13, 4)]
    out = list(local.rebatch(iter(blocks), 4))
    assert out[0] is blocks[0]  # untouched
    assert [len(b["image"]) for b in out] == [4, 4, 4, 4]  # 17 rows: the last one is left over
    assert np.concatenate([b["image"] for b in out]).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    assert all((b["label"] == b["image"] + 100).all() for b in out)


def test_the_plain_loader_sends_batches_of_the_steps_size_with_every_training_row(tiny_data: Path) -> None:
    manifest, _ = mf.load(tiny_data)
    batches = local.train_loader(tiny_data, manifest, batch=5, workers=0, device=torch.device("cpu"))
    epoch = [next(batches) for _ in range(manifest.splits["train"].images // 5)]
    assert all(b["image"].shape == (5, 224, 224, 3) and b["image"].dtype == torch.uint8 for b in epoch)
    assert set(epoch[0]) == {"image", "label", "offset", "flip", "valid"}
    assert all(b["valid"].all() for b in epoch)
    # the first epoch's rows, each once: no label more often than the training set has it
    labels = Counter(torch.cat([b["label"] for b in epoch]).tolist())
    train = Counter(pq.read_table(manifest.shard_paths(str(tiny_data), "train"), columns=["label"])
                    .column("label").to_pylist())
    assert labels <= train and labels.total() == 5 * len(epoch)
