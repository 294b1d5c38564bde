"""The training actor's own work, called in this process on real prepared shards, how
the training dataset groups shards into actor calls and blocks, and how validation
shards are split between ranks."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alexnet.bench import repeated
from alexnet.data import manifest as mf
from alexnet.data.augment import CROP, eval_batch
from alexnet.data.images import encode_jpeg
from alexnet.data.pipeline import (
    SHARDS_PER_CALL,
    DataResources,
    ShardAugment,
    binary_views,
    eval_reads,
    read_rows_of_rank,
    set_epoch,
    shards_per_call,
    start_epoch_clock,
    train_dataset,
)


def test_shard_augment_yields_every_row_of_its_shards_in_blocks(tiny_data: Path) -> None:
    manifest, _ = mf.load(tiny_data)
    paths = manifest.shard_paths(str(tiny_data), "train")
    aug = ShardAugment(manifest.pca_eigval, manifest.pca_eigvec, seed=0, out_rows=5, shuffle=False)
    blocks = list(aug({"path": np.array(paths, dtype=object)}))
    assert all(1 <= len(b["image"]) <= 5 for b in blocks)
    expected = [label for p in paths for label in pq.read_table(p, columns=["label"]).column("label").to_pylist()]
    assert np.concatenate([b["label"] for b in blocks]).tolist() == expected  # in order: shuffle off
    assert all(b["image"].shape[1:] == (CROP, CROP, 3) and b["valid"].all() for b in blocks)


def test_shards_per_call_leaves_no_actor_without_a_call() -> None:
    assert shards_per_call(shards=1000, actors=8) == SHARDS_PER_CALL
    assert shards_per_call(shards=3, actors=2) == 1
    assert shards_per_call(shards=1, actors=4) == 1


def test_each_actor_call_sends_its_shards_as_one_block(ray_session, tiny_data: Path) -> None:
    manifest, _ = mf.load(tiny_data)
    train = manifest.splits["train"]
    listed = repeated(manifest, 2 * SHARDS_PER_CALL * train.images)  # the shards, listed several times
    paths = listed.shard_paths(str(tiny_data), "train")
    res = DataResources(augment_actors=1, augment_cpus=0.25, read_cpus=0.25)
    blocks = [t.num_rows for t in train_dataset(str(tiny_data), listed, res, seed=0)
              .iter_batches(batch_size=None, batch_format="pyarrow")]
    assert len(blocks) == -(-len(paths) // SHARDS_PER_CALL)
    assert sum(blocks) == listed.splits["train"].images


def test_binary_views_match_the_values_of_sliced_chunked_and_large_columns() -> None:
    chunks = [pa.array([b"ab", None, b"", b"xyz"], pa.binary()), pa.array([b"q", b"rs", b"tuv"], pa.large_binary())]
    for column in (pa.chunked_array(chunks[:1]), pa.chunked_array(chunks[:1]).slice(1, 3),
                   pa.chunked_array([chunks[1].slice(1)]), pa.chunked_array([pa.array([], pa.binary())])):
        assert [bytes(v) for v in binary_views(column)] == [v or b"" for v in column.to_pylist()]


def augmented(aug: ShardAugment, paths: list[str]) -> dict[str, np.ndarray]:
    blocks = list(aug({"path": np.array(paths, dtype=object)}))
    return {k: np.concatenate([b[k] for b in blocks]) for k in ("image", "offset", "flip")}


def test_crops_differ_between_epochs_and_repeat_within_one(ray_session, tiny_data: Path) -> None:
    """Ray Data builds the actors from the same arguments every epoch: with a fixed --seed
    their draws still differ per epoch (the clock), and an epoch run again, by any actor,
    draws the same."""
    manifest, _ = mf.load(tiny_data)
    paths = manifest.shard_paths(str(tiny_data), "train")
    clock, _alive = start_epoch_clock()
    make = lambda: ShardAugment(manifest.pca_eigval, manifest.pca_eigvec, seed=0, clock=clock)  # noqa: E731
    set_epoch(clock, 0)
    first, again = augmented(make(), paths), augmented(make(), paths)
    set_epoch(clock, 1)
    second = augmented(make(), paths)
    for key in ("image", "offset", "flip"):
        assert np.array_equal(first[key], again[key]), key
    assert not np.array_equal(first["image"], second["image"])
    assert not np.array_equal(first["offset"], second["offset"])
    other_seed = augmented(ShardAugment(manifest.pca_eigval, manifest.pca_eigvec, seed=1, clock=clock), paths)
    assert not np.array_equal(second["offset"], other_seed["offset"])


def write_shards(folder: Path, rows: list[int]) -> list[str]:
    """Shards of `rows` rows each, in row groups of 2, with a global `index` as the
    preparation writes it and a label derived from it (1000 + index)."""
    jpeg = encode_jpeg(np.full((256, 256, 3), 128, np.uint8))
    paths, first = [], 0
    for i, n in enumerate(rows):
        index = np.arange(first, first + n, dtype=np.int64)
        path = folder / f"shard-{i}.parquet"
        pq.write_table(pa.table({"image": pa.array([jpeg] * n, pa.binary()), "label": index + 1000, "index": index}),
                       path, row_group_size=2)
        paths.append(str(path))
        first += n
    return paths


def scored_by(paths: list[str], rank: int, world: int) -> tuple[int, dict[str, np.ndarray]]:
    """(shards rank `rank` opens, the rows it scores), through the steps `eval_dataset`
    maps: each read item as Ray Data hands it over (a one-row numpy batch), then
    `eval_batch` on the rows read."""
    reads = eval_reads(paths, rank, world)
    tables = [t for item in reads
              for t in read_rows_of_rank({k: np.array([v], dtype=object) for k, v in item.items()},
                                         ["image", "label", "index"])]
    batches = [eval_batch({"image": np.array(t.column("image").to_pylist(), dtype=object),
                           "label": t.column("label").to_numpy(), "index": t.column("index").to_numpy()})
               for t in tables]
    return len(reads), {k: np.concatenate([b[k] for b in batches] or [np.empty(0, np.int64)])
                        for k in ("index", "label", "valid")}


@pytest.mark.parametrize("world", [1, 3, 9])
def test_validation_ranks_read_their_own_shards_and_score_every_row_once(tmp_path: Path, world: int) -> None:
    """7 shards of uneven sizes: over 3 ranks each reads its 2 whole shards and its rows
    of the 7th (3 files, not 7); with one rank it reads all 7 whole; with more ranks than
    shards every rank reads every shard and keeps its rows. In every case the ranks
    together score each row exactly once, with its own label."""
    rows = [3, 1, 4, 1, 5, 9, 2]
    paths = write_shards(tmp_path, rows)
    opened, scored = zip(*(scored_by(paths, r, world) for r in range(world)), strict=True)
    assert list(opened) == [len(rows) // world + len(rows) % world] * world
    index = np.concatenate([s["index"] for s in scored])
    assert sorted(index.tolist()) == list(range(sum(rows)))
    assert all((s["label"] == s["index"] + 1000).all() and s["valid"].all() for s in scored)
    with pytest.raises(ValueError, match="rank 3"):
        eval_reads(paths, 3, 3)
