"""Throughput measurements, each against its own ceiling or baseline in the same run.

decode  : libjpeg-turbo decode of the shards' JPEGs on one core (the ceiling), and the batched
          decode and crop that `--decode gpu` runs on the training device
augment : the project's augmentation on one core, in-process (decode, crop, flip, PCA)
augment_all_cores: the same in one process per core, all at once (what the cores deliver together)
pipeline: the Ray Data pipeline (actors that read and augment shards, zero-copy torch batches),
          and the same through the iterator training runs (`pipeline.train_batches`)
baseline: a torch DataLoader with torchvision transforms, per worker process
model   : training steps of our AlexNet (grouped, ungrouped) and torchvision's alexnet, eager
          and torch.compile'd, and the fraction of the device's bf16 peak they reach

Throughput is steady state: each figure is measured after a warm-up, and the pipeline's
start-up (time to first batch) is reported on its own. Only the pipeline needs Ray: the
rest is imported without it (the GPU check, `jobs/gpu_check.py`, runs where Ray is not).
"""

from __future__ import annotations

import io
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from alexnet.data import manifest as mf
from alexnet.data.augment import CROP, CROP_BYTES, OUTPUT_ROWS, TrainAugment
from alexnet.data.images import decode_buffer, decode_jpeg
from alexnet.flops import training_flops_per_image
from alexnet.model import AlexNet
from alexnet.store import read_parquet

if TYPE_CHECKING:
    from alexnet.data.pipeline import DataResources


def load_jpegs(root: str, manifest: mf.Manifest, limit: int) -> list[bytes]:
    table = read_parquet(manifest.shard_paths(root, "train"), columns=["image"])
    return table.column("image").to_pylist()[:limit]


def rate(fn: Callable[[], int], min_seconds: float) -> float:
    """Items per second of `fn` (which returns how many it did), repeated for at least
    `min_seconds` after one warm-up call."""
    fn()
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds:
        done += fn()
    return done / elapsed


def decode_per_core(jpegs: list[bytes], min_seconds: float) -> float:
    """The ceiling: decode only, into one reused buffer (the fastest way there is)."""
    buffer = decode_buffer()

    def run() -> int:
        for data in jpegs:
            decode_jpeg(data, buffer)
        return len(jpegs)
    torch.set_num_threads(1)
    return rate(run, min_seconds)


def decode_batched(jpegs: list[bytes], device: torch.device, min_seconds: float, batch: int = 128) -> float:
    """`--decode gpu`'s decode: batches of `batch` JPEGs decoded and centre-cropped on
    `device` by the training worker's own function (`device.decode_crops`: nvJPEG on a GPU,
    torchvision's libjpeg-turbo on a CPU, where torch's threads are the process's)."""
    from alexnet.data.device import decode_crops

    chunks = [jpegs[i:i + batch] for i in range(0, len(jpegs), batch)]
    centre = np.full((batch, 2), 0.5)

    def run() -> int:
        for chunk in chunks:
            images, _ = decode_crops(chunk, centre[:len(chunk)], device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return len(jpegs)
    return rate(run, min_seconds)


def augment_per_core(jpegs: list[bytes], manifest: mf.Manifest, min_seconds: float) -> float:
    """The actors' own code on JPEGs already in memory, one call for all of them as for
    one shard, in this process."""
    aug = TrainAugment(manifest.pca_eigval, manifest.pca_eigvec, seed=0)
    batch = {"image": np.array(jpegs, dtype=object), "label": np.zeros(len(jpegs), np.int64)}

    def run() -> int:
        for _ in aug(batch):
            pass
        return len(jpegs)
    return rate(run, min_seconds)


def _augment_pinned(core: int, jpegs: list[bytes], manifest: mf.Manifest, min_seconds: float,
                    start: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue) -> None:
    os.sched_setaffinity(0, {core})
    start.wait()
    results.put(augment_per_core(jpegs, manifest, min_seconds))


def augment_all_cores(jpegs: list[bytes], manifest: mf.Manifest, cpus: int, min_seconds: float) -> float:
    """What `cpus` cores deliver together: one in-process augmentation per core, all at
    once, summed. Cores that share caches, memory bandwidth or a hypervisor deliver less
    than `cpus` times one core on its own, and no pipeline on them can do better than this."""
    ctx = multiprocessing.get_context("spawn")  # this process has torch's threads: no fork
    cores = sorted(os.sched_getaffinity(0))
    start, results = ctx.Barrier(cpus), ctx.Queue()
    workers = [ctx.Process(target=_augment_pinned, args=(cores[i % len(cores)], jpegs, manifest, min_seconds,
                                                         start, results)) for i in range(cpus)]
    for w in workers:
        w.start()
    total = sum(results.get() for _ in workers)
    for w in workers:
        w.join()
    return total


class BytesDataset(torch.utils.data.Dataset):
    """What most users write: PIL decode and torchvision transforms per image."""

    def __init__(self, jpegs: list[bytes], manifest: mf.Manifest) -> None:
        from torchvision import transforms

        self.jpegs = jpegs
        eigval = torch.tensor(manifest.pca_eigval, dtype=torch.float32)
        eigvec = torch.tensor(manifest.pca_eigvec, dtype=torch.float32)

        def lighting(x: torch.Tensor) -> torch.Tensor:  # AlexNet-style PCA lighting
            alpha = torch.randn(3) * 0.1
            return x + (eigvec @ (alpha * eigval)).view(3, 1, 1)

        self.transform = transforms.Compose([
            transforms.RandomCrop(CROP), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
            transforms.Lambda(lighting),
            transforms.Normalize([m / 255 for m in manifest.rgb_mean], [0.229, 0.224, 0.225]),
        ])

    def __len__(self) -> int:
        return len(self.jpegs)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(Image.open(io.BytesIO(self.jpegs[i])).convert("RGB"))


def baseline_per_worker(jpegs: list[bytes], manifest: mf.Manifest, min_seconds: float) -> float:
    """A DataLoader with num_workers=0 measures what one worker process delivers."""
    torch.set_num_threads(1)
    loader = torch.utils.data.DataLoader(BytesDataset(jpegs, manifest), batch_size=64, num_workers=0)

    def run() -> int:
        return sum(len(b) for b in loader)
    return rate(run, min_seconds)


# The actors finish blocks side by side, so a rate over fewer blocks than this counts
# some that were made before its clock started.
STEADY_BLOCKS = 20


# What the training loop's iterator was before the actors shuffled: a local shuffle buffer of this
# many batches (`iter_torch_batches(local_shuffle_buffer_size=4 * batch)`), over actor
# calls that sent their rows in the shards' order. The benchmark measures it beside the
# iterator that replaced it (`pipeline.train_batches`, rows shuffled within each call).
LOCAL_SHUFFLE_BATCHES = 4

Consumer = Literal["blocks", "iter_torch_batches", "train", "train_local_shuffle"]


@dataclass
class PipelineResult:
    img_per_sec: float
    first_batch_s: float
    images: int
    cpus: float
    cold_img_per_sec: float  # the first execution, while the object store is still being paged in
    iter_torch_batches_img_per_sec: float | None  # the same stream through Ray's batches of OUTPUT_ROWS
    blocks: int  # blocks counted in `img_per_sec`: blocks arriving together make few of them a poor figure
    train_iter_img_per_sec: float | None = None  # through training's own iterator (`train_batches`)
    train_iter_local_shuffle_img_per_sec: float | None = None  # through the one it replaced
    train_batch: int = 0  # the training iterator's batch


def repeated(manifest: mf.Manifest, min_images: int) -> mf.Manifest:
    """The manifest with its training shards listed as many times as it takes to pass
    `min_images` (at least twice), so that one execution streams them all."""
    train = manifest.splits["train"]
    passes = max(2, -(-min_images // train.images))
    return replace(manifest, splits={**manifest.splits, "train": mf.SplitInfo(
        train.images * passes, 0, train.shards * passes)})


def stream(root: str, manifest: mf.Manifest, res: DataResources, skip: int, count: int,
           consumer: Consumer = "blocks", train_batch: int = 128,
           device: torch.device | None = None) -> tuple[float, float, int, int]:
    """One execution of the training pipeline into a consumer that touches every batch:
    (seconds to the first batch, images/sec after the first `skip` images (at least the
    first batch), images and batches counted). The consumer takes the blocks themselves
    (`torch_blocks`, on the host), Ray's `iter_torch_batches` of `OUTPUT_ROWS` (on the
    host), or the training loop's own iterator (`train_batches`: `train_batch` rows on
    `device`, the training device), or that iterator as it was before the actors shuffled (a local
    shuffle buffer of `LOCAL_SHUFFLE_BATCHES` batches, rows unshuffled by the actors)."""
    from alexnet.data.batches import torch_blocks
    from alexnet.data.pipeline import train_batches, train_dataset

    device = device or torch.device("cpu")
    ds = train_dataset(root, repeated(manifest, skip + count), res, seed=0,
                       shuffle_rows=consumer != "train_local_shuffle")
    if consumer == "blocks":
        batches = torch_blocks(ds)
    elif consumer == "iter_torch_batches":
        batches = ds.iter_torch_batches(batch_size=OUTPUT_ROWS, prefetch_batches=4)
    else:
        batches = train_batches(ds, train_batch, device,
                                local_shuffle_batches=LOCAL_SHUFFLE_BATCHES if consumer == "train_local_shuffle" else 0)
    start = time.perf_counter()
    first_batch_s, seen, counted, batches_counted, counting_since = 0.0, 0, 0, 0, 0.0
    for batch in batches:
        batch["image"][:, 0, 0, 0].sum()  # touch the batch
        n = int(batch["image"].shape[0])
        if not first_batch_s:
            first_batch_s = time.perf_counter() - start
        if counting_since:
            counted += n
            batches_counted += 1
        seen += n
        if not counting_since and seen >= skip:
            counting_since = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return first_batch_s, counted / (time.perf_counter() - counting_since), counted, batches_counted


def pipeline_throughput(root: str, manifest: mf.Manifest, cpus: int, min_images: int,
                        warmup_images: int = 0, compare: bool = True, train_batch: int = 128,
                        device: torch.device | None = None) -> PipelineResult:
    """The Ray Data pipeline on a local Ray limited to `cpus` CPUs, all of them for the
    input (one augmentation actor per CPU, which reads its own shards). With fewer
    CPUs than the machine has, Ray and its workers (and this consumer) are pinned to that
    many cores; Ray's CPU count alone is only a scheduling label.

    Two start-up costs are kept out of the steady rate. A fresh Ray's object store is
    zero-filled by the kernel page by page the first time blocks land on it; and every
    new actor process (each execution starts its own) faults each page of the store into
    its page tables the first time it writes there. A training epoch pays both once, in
    its first few GB; here they cost 10-40% of the rate over a window of a few GB. So a
    first execution streams `warmup_images` (0: enough to fill the object store once),
    reported apart with its start-up (`cold_img_per_sec`, `first_batch_s`), and the
    steady rate is counted in a second execution over `min_images` after its own first
    `warmup_images`. With `compare`, three more executions measure the same stream
    through `iter_torch_batches` of `OUTPUT_ROWS`, through the training loop's iterator
    (`train_batch` rows on `device`) and through the one it replaced, each counted the
    same way, so that their ratios to the headline are taken in one process."""
    import ray

    from alexnet.data.pipeline import DataResources
    from alexnet.ray_setup import init_ray

    cores = sorted(os.sched_getaffinity(0))
    if cpus < len(cores):  # Ray's processes inherit this: the pipeline really gets `cpus` cores
        os.sched_setaffinity(0, cores[:cpus])
    init_ray(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        res = DataResources(augment_actors=cpus, augment_cpus=0.95, read_cpus=0.05)
        store_bytes = ray.cluster_resources().get("object_store_memory", 0)
        warmup_images = warmup_images or int(store_bytes // CROP_BYTES) + 1
        first_batch_s, cold_rate, _, _ = stream(root, manifest, res, 0, warmup_images)
        measured = max(min_images, 2 * OUTPUT_ROWS)
        _, rate, images, blocks = stream(root, manifest, res, warmup_images, measured)
        result = PipelineResult(rate, first_batch_s, images, cpus, cold_rate, None, blocks)
        if compare:
            def steady(consumer: Consumer) -> float:
                return stream(root, manifest, res, warmup_images, measured, consumer, train_batch, device)[1]
            result.iter_torch_batches_img_per_sec = steady("iter_torch_batches")
            result.train_iter_img_per_sec = steady("train")
            result.train_iter_local_shuffle_img_per_sec = steady("train_local_shuffle")
            result.train_batch = train_batch
        return result
    finally:
        ray.shutdown()
        os.sched_setaffinity(0, cores)


def training_step_rate(model: torch.nn.Module, device: torch.device, batch: int, steps: int,
                       amp: bool, channels_last: bool, num_classes: int, compiled: bool = False) -> float:
    """Images/sec of SGD steps on one fixed batch (2 warm-up steps, then `steps` timed).

    With `compiled`, the model goes through `torch.compile` first; the warm-up steps pay
    for the compilation, so the rate is the compiled steady state."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device).to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    step_model = torch.compile(model) if compiled else model
    x = torch.randn(batch, 3, CROP, CROP, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = 0.0
    for i in range(steps + 2):
        if i == 2:
            sync()
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            loss = F.cross_entropy(step_model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    return batch * steps / (time.perf_counter() - start)


def with_torch_lrn(model: AlexNet) -> AlexNet:
    """`model` with PyTorch's `nn.LocalResponseNorm` in place of ours (the same function,
    autograd's generic backward): what our hand-written backward is measured against."""
    from alexnet.model import LRN_SIZE, LocalResponseNorm

    for i, layer in enumerate(model.features):
        if isinstance(layer, LocalResponseNorm):
            model.features[i] = torch.nn.LocalResponseNorm(LRN_SIZE, layer.alpha * LRN_SIZE, layer.beta, layer.k)
    return model


def model_variants(num_classes: int) -> dict[str, Callable[[], torch.nn.Module]]:
    """Our AlexNet, grouped and ungrouped, with PyTorch's LRN and with none (`--lrn none`),
    and torchvision's: what the model step compares."""
    from torchvision.models import alexnet as torchvision_alexnet

    return {"grouped": lambda: AlexNet(num_classes), "ungrouped": lambda: AlexNet(num_classes, grouped=False),
            "grouped_torch_lrn": lambda: with_torch_lrn(AlexNet(num_classes)),
            "grouped_no_lrn": lambda: AlexNet(num_classes, lrn="none"),
            "torchvision": lambda: torchvision_alexnet(num_classes=num_classes)}


def model_step_throughput(device: torch.device, batch: int, steps: int, amp: bool,
                          channels_last: bool, num_classes: int = 1000, compiled: bool = False) -> dict[str, float]:
    """Each of `model_variants` on the same device and batch."""
    return {name: training_step_rate(build(), device, batch, steps, amp, channels_last, num_classes, compiled)
            for name, build in model_variants(num_classes).items()}


def model_training_gflop(num_classes: int = 1000) -> dict[str, float]:
    """GFLOP of one image's training step, for each of `model_variants`."""
    return {name: training_flops_per_image(build()) / 1e9 for name, build in model_variants(num_classes).items()}
