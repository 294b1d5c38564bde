"""The input pipeline without Ray: shards prepared in worker processes, training batches
from a torch DataLoader whose workers run the actors' own code, validation batches in
this process.

For `jobs/gpu_check.py`, which runs on GPU machines that have torch but neither Ray nor
MLflow (and no package registry to fetch them from). Everything an image goes through is
the project's own code: preparation's resize and re-encode (`images.load_as_rgb_square`,
`encode_jpeg`), the actors' reading, seeded crops and in-call shuffle
(`shards.ShardsAugment`), validation's decode (`augment.eval_batch`). Only the transport
differs: DataLoader worker processes and shared memory instead of Ray's actors and
object store, so Ray's own cost is the one part that the check leaves to the CPU
benchmark's pipeline ratio (docs/performance.md).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from alexnet.data import manifest as mf
from alexnet.data.augment import eval_batch
from alexnet.data.device import decode_batch
from alexnet.data.images import SHARD_SIZE
from alexnet.data.layout import SourceImage, find_images
from alexnet.data.prepare import MIN_IMAGES_FOR_OWN_PCA, PARQUET_ENCODING, SHUFFLE_SEED, convert_image
from alexnet.data.shards import SHARDS_PER_CALL, ShardsAugment, read_row_groups
from alexnet.store import write_atomic


def _convert(args: tuple[list[str], int]) -> list[tuple[bytes, list[float], list[float]] | None]:
    """Preparation's per-image work (prepare.convert_image) over a chunk of files, None
    for a file that does not decode."""
    paths, quality = args
    out: list[tuple[bytes, list[float], list[float]] | None] = []
    for path in paths:
        try:
            out.append(convert_image(path, quality))
        except Exception:  # noqa: BLE001 - counted as skipped, as the preparation job does
            out.append(None)
    return out


def prepare_local(src: str | Path, out: str | Path, rows_per_shard: int = 1000, quality: int = 90,
                  processes: int = 0) -> mf.Manifest:
    """`src` (ImageNet's layout) into Parquet shards and a manifest as the preparation job
    writes them (columns image, label, wnid, path, index; training rows in the same fixed
    random order; the training set's RGB mean and PCA), with a process pool instead of Ray.

    No resumable chunks and no lock: it writes a new `out` in one go, for a benchmark set.
    `rows_per_shard` may be smaller than preparation's 1,000, so that a small set still
    has a shard for every loader worker. `processes`: 0 for one per core, 1 for none."""
    src, out = Path(src), Path(out)
    classes, splits = find_images(src)
    class_index = {w: i for i, w in enumerate(classes)}
    out.mkdir(parents=True, exist_ok=False)
    infos: dict[str, mf.SplitInfo] = {}
    sums = (np.zeros(3), np.zeros(9), 0)
    processes = processes or os.cpu_count() or 1
    # spawn: the caller may hold CUDA or other threads; one process: no pool at all
    pool = multiprocessing.get_context("spawn").Pool(processes) if processes > 1 else None
    with pool or nullcontext():
        mapped = pool.map if pool is not None else map
        for split, images in splits.items():
            if split == "train":
                order = np.random.default_rng(SHUFFLE_SEED).permutation(len(images))
                images = [images[i] for i in order]
            chunks = [[im.path for im in images[i:i + 32]] for i in range(0, len(images), 32)]
            converted = [r for part in mapped(_convert, [(c, quality) for c in chunks]) for r in part]
            infos[split], split_sums = _write_split(out, split, images, converted, class_index, rows_per_shard)
            if split == "train":
                sums = split_sums
    mean_sum, moment_sum, n = sums
    if n >= MIN_IMAGES_FOR_OWN_PCA:
        mean01, moment = mean_sum / n, (moment_sum / n).reshape(3, 3)
        eigval, eigvec = mf.pca_from_moments(mean01, moment)
        rgb_mean, pca_source = (mean01 * 255).tolist(), "train"
    else:
        rgb_mean, eigval, eigvec, pca_source = mf.IMAGENET_MEAN, mf.IMAGENET_EIGVAL, mf.IMAGENET_EIGVEC, \
            "imagenet-constants"
    manifest = mf.Manifest(num_classes=len(classes), image_size=SHARD_SIZE, splits=infos, rgb_mean=rgb_mean,
                           pca_eigval=eigval, pca_eigvec=eigvec, pca_source=pca_source, source=str(src.resolve()))
    write_atomic(out / mf.CLASSES, json.dumps(classes, indent=1))
    write_atomic(out / mf.MANIFEST, manifest.to_json())
    return manifest


def _write_split(out: Path, split: str, images: list[SourceImage], converted: list, class_index: dict[str, int],
                 rows_per_shard: int) -> tuple[mf.SplitInfo, tuple[np.ndarray, np.ndarray, int]]:
    rows = [(im, r, i) for i, (im, r) in enumerate(zip(images, converted, strict=True)) if r is not None]
    (out / split).mkdir()
    shards = []
    for s in range(0, len(rows), rows_per_shard):
        part = rows[s:s + rows_per_shard]
        name = f"{split}/part-{s // rows_per_shard:05d}.parquet"
        table = pa.table({"image": pa.array([r[0] for _, r, _ in part], pa.binary()),
                          "label": pa.array([class_index[im.wnid] for im, _, _ in part], pa.int64()),
                          "wnid": [im.wnid for im, _, _ in part], "path": [im.path for im, _, _ in part],
                          "index": pa.array([i for _, _, i in part], pa.int64())})
        pq.write_table(table, out / name, **PARQUET_ENCODING)
        shards.append(name)
    mean_sum = np.sum([r[1] for _, r, _ in rows] or [np.zeros(3)], 0)
    moment_sum = np.sum([r[2] for _, r, _ in rows] or [np.zeros(9)], 0)
    return mf.SplitInfo(images=len(rows), skipped=len(images) - len(rows), shards=shards), \
        (mean_sum, moment_sum, len(rows))


def rebatch(blocks: Iterator[dict[str, np.ndarray]], batch: int) -> Iterator[dict[str, np.ndarray]]:
    """Blocks of at most `batch` rows as batches of exactly `batch`: full blocks pass
    through untouched, and only the short ones (each call's last) are joined, the one
    copy this costs."""
    pending: list[dict[str, np.ndarray]] = []
    have = 0
    for block in blocks:
        n = len(block["label"])
        if n == batch and not pending:
            yield block
            continue
        pending.append(block)
        have += n
        if have >= batch:
            joined = {k: np.concatenate([p[k] for p in pending]) for k in block}
            yield {k: v[:batch] for k, v in joined.items()}
            pending = [{k: v[batch:] for k, v in joined.items()}] if have > batch else []
            have -= batch


class TrainStream(torch.utils.data.IterableDataset):
    """Endless training batches of `batch` rows, as a DataLoader worker makes them. Each
    epoch takes the shards in a seeded order, `SHARDS_PER_CALL` at a time as an actor
    call does; the epochs' calls form one endless sequence, of which worker k of n
    augments calls k, k + n, ... with the actors' code (`ShardsAugment`: the seeded crops
    of each row group, the call's rows shuffled), so every worker stays busy whatever
    the number of shards. With `decode` off the workers send JPEGs and their random
    choices, as the actors do for `--decode gpu` (the JPEGs stay a numpy array of bytes)."""

    def __init__(self, paths: list[str], manifest: mf.Manifest, batch: int, seed: int = 0,
                 decode: bool = True) -> None:
        self.paths, self.batch, self.seed, self.decode = paths, batch, seed, decode
        self.eigval, self.eigvec = manifest.pca_eigval, manifest.pca_eigvec

    def __iter__(self) -> Iterator[dict[str, torch.Tensor | np.ndarray]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        aug = ShardsAugment(self.eigval, self.eigvec, seed=self.seed, out_rows=self.batch,  # in this process
                            decode=self.decode)
        blocks = (block for epoch, call in itertools.islice(self.calls(), worker, None, workers)
                  for block in aug.augment_shards(call, epoch))
        for batch in rebatch(blocks, self.batch):
            yield {k: v if v.dtype == object else torch.from_numpy(v) for k, v in batch.items()}

    def calls(self) -> Iterator[tuple[int, list[str]]]:
        """(epoch, the call's shard paths), epoch after epoch."""
        for epoch in itertools.count():
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.paths)).tolist()
            for i in range(0, len(order), SHARDS_PER_CALL):
                yield epoch, [self.paths[j] for j in order[i:i + SHARDS_PER_CALL]]


def train_loader(root: str | Path, manifest: mf.Manifest, batch: int, workers: int, device: torch.device,
                 seed: int = 0, prefetch: int = 4, decode_on_device: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Endless training batches from `workers` processes (0: in this process), in pinned
    memory when `device` is a GPU, so that the step's copies to it do not wait. Workers
    are forked: they never touch the GPU, and start in a moment. With `decode_on_device`
    the workers only read and draw, and each batch is decoded and cropped on `device`
    here, as a training worker does with `--decode gpu` (`device.decode_batch`)."""
    loader = torch.utils.data.DataLoader(
        TrainStream(manifest.shard_paths(str(root), "train"), manifest, batch, seed, decode=not decode_on_device),
        batch_size=None, num_workers=workers, pin_memory=device.type == "cuda" and not decode_on_device,
        prefetch_factor=prefetch if workers else None, multiprocessing_context="fork" if workers else None)
    if decode_on_device:
        return (decode_batch(b, device) for b in loader)
    return iter(loader)


def val_batches(root: str | Path, manifest: mf.Manifest, batch: int, crop: str = "ten") -> Iterator[dict]:
    """Every validation row once, decoded in this process as the evaluation tasks do
    (`eval_batch`), as torch tensors."""
    rows = {"image": [], "label": [], "index": []}
    for table in read_row_groups({"path": manifest.shard_paths(str(root), "val")}, ["image", "label", "index"]):
        rows["image"] += table.column("image").to_pylist()
        rows["label"] += table.column("label").to_pylist()
        rows["index"] += table.column("index").to_pylist()
    for start in range(0, len(rows["image"]), batch):
        part = {"image": np.array(rows["image"][start:start + batch], dtype=object),
                "label": np.array(rows["label"][start:start + batch], np.int64),
                "index": np.array(rows["index"][start:start + batch], np.int64)}
        yield {k: torch.from_numpy(v) for k, v in eval_batch(part, crop).items()}
