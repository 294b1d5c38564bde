"""Ray Data pipelines from the shards: augmentation actors that read their own shards
for training, read and decode tasks for evaluation. Batches stay uint8 until the
training device."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy, Dataset

from alexnet.data.augment import PCA_STD, EvalCrop, eval_batch
from alexnet.data.manifest import Manifest
from alexnet.data.shards import SHARDS_PER_CALL, ShardsAugment, read_row_groups
from alexnet.data.shards import binary_views as binary_views  # its home was here

if TYPE_CHECKING:
    import torch
    from ray.data import DataIterator

EVAL_BATCH = 64  # images per evaluation task call
CALLS_IN_FLIGHT = 4  # calls queued on (or running in) each training actor
TRAIN_PREFETCH_BATCHES = 2  # batches the training iterator keeps ready ahead of the step
TRAIN_BLOCK_BYTES = 512 << 20  # room for a call's crops in one block (~3,500 of 150 KB)


@dataclass(frozen=True)
class DataResources:
    """How the input pipeline shares the cluster's CPUs with the training workers
    (`read_cpus`: evaluation's read and decode tasks)."""

    augment_actors: int
    augment_cpus: float
    read_cpus: float


def plan_resources(total_cpus: float, reserved_by_workers: float,
                   augment_actors: int = 0, augment_cpus: float = 0.0) -> DataResources:
    """On a small machine everything is fractional: actors and eval tasks all need some
    CPU, or the streaming executor waits forever for a slot."""
    free = max(total_cpus - reserved_by_workers, 0.5)
    small = total_cpus <= 8
    cpus = augment_cpus or (0.25 if small else 1.0)
    actors = augment_actors or max(1, int((free - 0.5) / cpus) if not small else 1)
    return DataResources(augment_actors=actors, augment_cpus=cpus, read_cpus=0.25 if small else 1.0)


def shard_paths_dataset(paths: list[str], shuffle: bool) -> Dataset:
    """One row per shard file. The manifest already lists the shards, so no listing step
    is needed. (Ray Data's ``read_parquet`` lists files in a task that always takes a
    whole CPU, which a small machine running training workers cannot spare, and the
    pipeline would hang.)"""
    ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=len(paths))
    return ds.randomize_block_order() if shuffle else ds


@ray.remote(num_cpus=0)
class EpochClock:
    """The epoch a training run is in, for the augmentation actors. Ray Data builds the
    actors from the same arguments every epoch, so they ask: rank 0 sets the epoch before
    any rank starts reading it (Ray Data starts an epoch's execution only once every rank
    has asked for it)."""

    def __init__(self) -> None:
        self.epoch = 0

    def set(self, epoch: int) -> None:
        self.epoch = epoch

    def get(self) -> int:
        return self.epoch


def start_epoch_clock() -> tuple[str, ray.actor.ActorHandle]:
    """A new clock for one training run: the name its users look it up by, and the handle
    that keeps it alive (Ray ends an actor once its creator drops the last handle)."""
    name = f"alexnet-epoch-clock-{uuid.uuid4().hex}"
    handle = EpochClock.options(name=name).remote()
    ray.get(handle.get.remote())  # registered and running before anyone looks it up
    return name, handle


def set_epoch(clock: str, epoch: int) -> None:
    """Rank 0 at the start of each epoch: from now on the actors draw `epoch`'s stream."""
    ray.get(ray.get_actor(clock).set.remote(epoch))


class ShardAugment(ShardsAugment):
    """The training actor: reads each shard it is given and yields its augmented rows, in
    a seeded random order over the call (`alexnet.data.shards.ShardsAugment`).

    Reading in the actor rather than in a read task per shard saves what each Ray task
    costs (scheduling in the driver, the raylet, a worker process, the shard's JPEGs going
    through the object store): on 2 vCPUs (2026-11-23) ~30 us of CPU per image, a quarter
    of the augmentation itself, and 17% more images per second (docs/performance.md).

    Ray Data builds the actors from the same arguments every epoch, so with a `seed` the
    actor asks the epoch `clock` which epoch's streams to draw."""

    def __init__(self, *args, clock: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.clock = ray.get_actor(clock) if clock else None

    def epoch(self) -> int:
        return ray.get(self.clock.get.remote()) if self.clock is not None else 0

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        yield from self.augment_shards(batch["path"], self.epoch() if self.seed is not None else 0)


def shards_per_call(shards: int, actors: int) -> int:
    """`SHARDS_PER_CALL`, or fewer where there are too few shards to give every actor one call."""
    return max(1, min(SHARDS_PER_CALL, shards // max(actors, 1)))


def train_dataset(root: str, manifest: Manifest, res: DataResources, seed: int | None = None,
                  clock: str | None = None, shuffle_rows: bool = True, decode_on_device: bool = False,
                  pca_std: float = PCA_STD, crop_flip: bool = True) -> Dataset:
    """Shards in a new random order each epoch, `SHARDS_PER_CALL` per actor call, each
    call's crops one block, its rows in a seeded random order (`shuffle_rows`; off only
    for the benchmark's comparison with the local shuffle buffer that it replaced). With
    `decode_on_device` the actors send the rows' JPEGs and random choices instead of
    crops, for `train_batches` to decode on the training device (`--decode gpu`).
    `pca_std` and `crop_flip` are the augmentation's switches (`--pca-std`, `--no-crop-flip`).

    Ray's cost per block (the driver's bookkeeping, the raylet, creating and sealing the
    object, the streaming generator's report) is fixed, ~9 ms of CPU on 2 vCPUs
    (2026-11-23), so bigger blocks spread it over more images: two ~720-image shards per call
    delivered 3-8% more images per second than one. Each actor has up to `CALLS_IN_FLIGHT`
    calls queued: with Ray Data's default of two it waited for its next one 11-13% of the
    time (2% with four, and 12% more images per second). See docs/performance.md."""
    paths = manifest.shard_paths(root, "train")
    ds = shard_paths_dataset(paths, shuffle=True).map_batches(
        ShardAugment,
        fn_constructor_kwargs={"eigval": manifest.pca_eigval, "eigvec": manifest.pca_eigvec, "seed": seed,
                              "clock": clock, "shuffle": shuffle_rows, "decode": not decode_on_device,
                              "pca_std": pca_std, "crop_flip": crop_flip},
        compute=ActorPoolStrategy(size=res.augment_actors, max_tasks_in_flight_per_actor=CALLS_IN_FLIGHT),
        num_cpus=res.augment_cpus,
        batch_size=shards_per_call(len(paths), res.augment_actors),
    )
    ds.context.target_max_block_size = TRAIN_BLOCK_BYTES
    return ds


def train_batches(source: Dataset | DataIterator, batch_size: int, device: torch.device | str = "cpu",
                  local_shuffle_batches: int = 0, decode_on_device: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """The iterator every training worker runs its epoch over, and the one the benchmark
    measures (`jobs/bench.py`'s `pipeline_train_iter_img_per_sec`): batches of exactly
    `batch_size` rows on `device`, `TRAIN_PREFETCH_BATCHES` ahead.

    No local shuffle buffer: the actors already send each call's rows in a random order
    (`alexnet.data.shards`), and a buffer would gather every image into fresh host memory
    once more. `local_shuffle_batches` brings one of that many batches back, for the
    benchmark's comparison. With `decode_on_device` (a `train_dataset` of the same
    setting) each batch's JPEGs are decoded and cropped on `device` here
    (`alexnet.data.device.decode_batch`)."""
    if decode_on_device:
        from alexnet.data.device import decode_batch

        numpy_batches = source.iter_batches(batch_size=batch_size, drop_last=True, batch_format="numpy",
                                            prefetch_batches=TRAIN_PREFETCH_BATCHES)
        return (decode_batch(b, device) for b in numpy_batches)
    return source.iter_torch_batches(
        batch_size=batch_size, drop_last=True, device=device, prefetch_batches=TRAIN_PREFETCH_BATCHES,
        local_shuffle_buffer_size=local_shuffle_batches * batch_size or None)


def eval_assignment(paths: list[str], rank: int = 0, world: int = 1) -> tuple[list[str], list[str]]:
    """(whole, shared): the shards rank `rank` of `world` evaluates whole, and the shards
    every rank reads, each keeping only its own rows (``index % world == rank``).

    Each rank reading every shard and dropping the other ranks' rows would make every
    rank pay the I/O and Parquet decoding of the whole split, however many workers share
    it. Here the first ``world * (len(paths) // world)`` shards are dealt out whole,
    round-robin (rank r gets r, r + world, ...), and only the last ``len(paths) % world``
    shards, which cannot be dealt out evenly, are split by row: a rank reads at most
    ``len(paths) // world + world - 1`` shards, and every listed row is evaluated by
    exactly one rank. With more ranks than shards every shard is shared."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not one of {world} ranks")
    dealt = len(paths) - len(paths) % world
    return paths[rank:dealt:world], paths[dealt:]


def eval_reads(paths: list[str], rank: int = 0, world: int = 1) -> list[dict[str, str | int]]:
    """What rank `rank` reads: one item per shard, with the row filter it reads the shard
    with (`read_rows_of_rank`); a whole shard has ``rank=0, world=1``, which keeps every row."""
    whole, shared = eval_assignment(paths, rank, world)
    return ([{"path": p, "rank": 0, "world": 1} for p in whole]
            + [{"path": p, "rank": rank, "world": world} for p in shared])


def rows_of_rank(table: pa.Table, rank: int, world: int) -> pa.Table:
    """The rows of `table` with ``index % world == rank``: the global ``index`` numbers
    every row of a split once, so the ranks' rows of a shared shard never overlap."""
    if world == 1:
        return table
    return table.filter(pa.array(table.column("index").to_numpy() % world == rank))


def read_rows_of_rank(batch: dict[str, np.ndarray], columns: list[str]) -> Iterator[pa.Table]:
    """Each item's shard (from `eval_reads`) a row group at a time, only the rows of the
    item's rank. Filtering here rather than after decoding keeps the other ranks' JPEGs out
    of the object store; a row group with no rows of this rank yields nothing."""
    for path, rank, world in zip(batch["path"], batch["rank"], batch["world"], strict=True):
        for table in read_row_groups({"path": np.array([path], dtype=object)}, columns):
            mine = rows_of_rank(table, int(rank), int(world))
            if mine.num_rows:
                yield mine


def eval_dataset(root: str, manifest: Manifest, res: DataResources, crop: EvalCrop = "center",
                 rank: int = 0, world: int = 1, split: str = "val") -> Dataset:
    """This rank's share of a split (`eval_assignment`): whole shards of its own, and its
    rows of the shards that do not divide among the ranks. Across the ranks every image
    is evaluated exactly once. One read task per shard, listed from the manifest as in
    `shard_paths_dataset` (no Ray Data listing task, which would take a whole CPU)."""
    reads = eval_reads(manifest.shard_paths(root, split), rank, world)
    ds = ray.data.from_items(reads, override_num_blocks=len(reads)).map_batches(
        read_rows_of_rank, fn_kwargs={"columns": ["image", "label", "index"]}, batch_size=1,
        batch_format="numpy", num_cpus=res.read_cpus)
    return ds.map_batches(eval_batch, fn_kwargs={"crop": crop}, num_cpus=res.read_cpus, batch_size=EVAL_BATCH)
