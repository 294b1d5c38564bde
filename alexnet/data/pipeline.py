"""Ray Data pipelines from the shards: augmentation actors that read their own shards
for training, read and decode tasks for evaluation. Batches stay uint8 until the
training device."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import ray
from ray.data import ActorPoolStrategy, Dataset

from alexnet.data.augment import EvalCrop, TrainAugment, eval_batch
from alexnet.data.manifest import Manifest
from alexnet.seeding import augment_rng

EVAL_BATCH = 64  # images per evaluation task call
SHARDS_PER_CALL = 2  # shards each training actor call reads, augments and sends as one block
CALLS_IN_FLIGHT = 4  # calls queued on (or running in) each training actor
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


def read_row_groups(batch: dict[str, np.ndarray], columns: list[str]) -> Iterator[pa.Table]:
    """Stream shard files one row group at a time (local paths, NFS, s3://, gs://)."""
    for path in batch["path"]:
        fs, file_path = pyarrow.fs.FileSystem.from_uri(path) if "://" in path else (None, path)
        with pq.ParquetFile(file_path, filesystem=fs) as pf:
            for i in range(pf.num_row_groups):
                yield pf.read_row_group(i, columns=columns)


def shard_paths_dataset(paths: list[str], shuffle: bool) -> Dataset:
    """One row per shard file. The manifest already lists the shards, so no listing step
    is needed. (Ray Data's ``read_parquet`` lists files in a task that always takes a
    whole CPU, which a small machine running training workers cannot spare, and the
    pipeline would hang.)"""
    ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=len(paths))
    return ds.randomize_block_order() if shuffle else ds


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


class ShardAugment(TrainAugment):
    """The training actor: reads each shard it is given and yields its augmented batches.

    Reading in the actor rather than in a read task per shard saves what each Ray task
    costs (scheduling in the driver, the raylet, a worker process, the shard's JPEGs going
    through the object store): on 2 vCPUs (2026-11-23) ~30 us of CPU per image, a quarter
    of the augmentation itself, and 17% more images per second (docs/performance.md).

    With a `seed`, each row group's crops, flips and PCA offsets come from a stream of
    their own (`alexnet.seeding.augment_rng`: the seed, the epoch on `clock`, the row
    group's first image), so they differ between epochs and are the same whenever that
    epoch is run again, whichever actor gets the shard. Without one, each actor draws
    from fresh OS entropy."""

    def __init__(self, *args, clock: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.clock = ray.get_actor(clock) if clock else None

    def epoch(self) -> int:
        return ray.get(self.clock.get.remote()) if self.clock is not None else 0

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        epoch = self.epoch() if self.seed is not None else 0
        for table in read_row_groups(batch, ["image", "label", "index"]):
            rng = None if self.seed is None else augment_rng(self.seed, epoch, int(table.column("index")[0].as_py()))
            yield from super().__call__({"image": binary_views(table.column("image")),
                                         "label": table.column("label").to_numpy()}, rng)


def shards_per_call(shards: int, actors: int) -> int:
    """`SHARDS_PER_CALL`, or fewer where there are too few shards to give every actor one call."""
    return max(1, min(SHARDS_PER_CALL, shards // max(actors, 1)))


def train_dataset(root: str, manifest: Manifest, res: DataResources, seed: int | None = None,
                  clock: str | None = None) -> Dataset:
    """Shards in a new random order each epoch, `SHARDS_PER_CALL` per actor call, each
    call's crops one block.

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
                              "clock": clock},
        compute=ActorPoolStrategy(size=res.augment_actors, max_tasks_in_flight_per_actor=CALLS_IN_FLIGHT),
        num_cpus=res.augment_cpus,
        batch_size=shards_per_call(len(paths), res.augment_actors),
    )
    ds.context.target_max_block_size = TRAIN_BLOCK_BYTES
    return ds


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
