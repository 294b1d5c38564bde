"""The seam between Ray Train and plain PyTorch: what every training worker runs.

Everything here but the Ray calls (rank, dataset shard, checkpoint, report) is ordinary
PyTorch from `alexnet.engine`. Rank 0 writes the checkpoint and logs to MLflow; every
rank calls `ray.train.report` once per epoch, after the counts are summed over ranks.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from mlflow.tracking import MlflowClient

from alexnet import checkpoint as ckpt
from alexnet import models, tracking
from alexnet.checkpoint import CHECKPOINT_FILE
from alexnet.config import TrainConfig
from alexnet.data import manifest as mf
from alexnet.data.pipeline import DataResources, eval_dataset, set_epoch, train_batches
from alexnet.engine import EpochStats, evaluate, train_one_epoch
from alexnet.metrics import error_percent
from alexnet.optim import set_lr
from alexnet.recipe import build_model, build_optimizer_for, model_args, schedule_for
from alexnet.schedule import LRSchedule
from alexnet.seeding import seed_training_step


def save_checkpoint(directory: str, state: dict[str, Any]) -> None:
    """checkpoint.pt in `directory`, tensors and plain values only (alexnet/checkpoint.py)."""
    ckpt.save(os.path.join(directory, CHECKPOINT_FILE), state)


def load_checkpoint(checkpoint: ray.train.Checkpoint | None) -> dict[str, Any] | None:
    """The state to resume from, read without unpickling objects: --storage may be a
    shared bucket that others can write to. Load its weights with `ckpt.load_weights`."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return ckpt.load(os.path.join(d, CHECKPOINT_FILE), f"the checkpoint in {checkpoint.path}")


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t.cpu().tolist()


def epoch_metrics(train: EpochStats, counts: torch.Tensor, lr: float, epoch_s: float,
                  device: torch.device, val_skipped: int = 0) -> dict[str, float]:
    """The epoch's metrics over all ranks. The validation errors are never optimistic:
    their denominator is every validation image of the source, and the images that
    preparation could not decode (`val_skipped`, from the manifest) count as errors, as
    do the rows that fail to decode now (`bad_images`)."""
    loss_sum, images, correct, bad, wait_s, total_s, c1, c5, n_val, bad_val, val_loss_sum = all_reduce_sum(
        [train.loss_sum, train.images, train.correct, train.bad_images, train.wait_s, train.total_s,
         *counts.tolist()], device)
    return {
        "train_loss": loss_sum / max(images, 1),
        "train_top1_err": error_percent(correct, images),
        "val_top1_err": error_percent(c1, n_val + val_skipped),
        "val_top5_err": error_percent(c5, n_val + val_skipped),
        "val_loss": val_loss_sum / max(n_val - bad_val, 1),
        "lr": lr,
        "images_per_sec": (images + bad) / max(epoch_s, 1e-9),
        "input_stall_frac": wait_s / max(total_s, 1e-9),
        "bad_images": bad + bad_val,
        "val_images": n_val,
        "val_skipped": val_skipped,
    }


def say(line: str) -> None:
    """A progress line from a worker. Ray Train tees a worker's print() to its own logger
    as well as to stdout, and both reach the driver: writing to the process's real stdout
    shows each line once."""
    print(line, file=sys.__stdout__, flush=True)


@dataclass
class StepPrinter:
    """Rank 0's progress line every `every` steps (throughput estimated for all ranks)."""

    label: str
    steps: int
    every: int
    lr: float
    world: int
    started: float

    def __call__(self, step: int, s: EpochStats) -> None:
        if (step + 1) % self.every == 0:
            rate = self.world * (s.images + s.bad_images) / (time.perf_counter() - self.started)
            say(f"[train] {self.label} step {step + 1}/{self.steps} loss {s.loss_sum / max(s.images, 1):.4f} "
                f"lr {self.lr:.2e} {rate:.1f} img/s")


def train_func_per_worker(config: dict[str, Any]) -> None:
    cfg = TrainConfig(**config["train"])
    manifest = mf.Manifest.from_dict(config["manifest"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    on_gpu = device.type == "cuda"
    # Workers on one node share its cores; Ray's OMP_NUM_THREADS=1 for fractional CPUs
    # would leave a CPU-only run on one core.
    threads = cfg.threads_per_worker or max(1, (os.cpu_count() or 1) // ctx.get_local_world_size())
    torch.set_num_threads(threads)
    # On CPU the worker process starts with GLIBC_TUNABLES (trainer.fit's worker_runtime_env):
    # mallopt from here would not reach this thread's own malloc arena (alexnet/memory.py).
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank

    model = build_model(cfg, manifest.num_classes)
    schedule = schedule_for(cfg)
    state = load_checkpoint(ray.train.get_checkpoint())
    if state is not None:
        ckpt.load_weights(model, state["model"], f"run '{cfg.name}' (its last checkpoint)")
    if on_gpu and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = ray.train.torch.prepare_model(model)
    step_model = torch.compile(model, mode=cfg.compile_mode) if cfg.compile else model  # shares its parameters
    optimizer = build_optimizer_for(model, cfg)
    start_epoch, history = restore_progress(state, optimizer, schedule)

    mlflow_client = MlflowClient(config["tracking_uri"]) if rank == 0 else None
    if mlflow_client is not None and history:  # a restart may have died before logging
        tracking.log_epoch(mlflow_client, config["run_id"], len(history) - 1, history[-1])
        tracking.log_resume(mlflow_client, config["run_id"], start_epoch)

    mean = torch.tensor(manifest.rgb_mean, dtype=torch.float32, device=device)
    val = eval_dataset(config["data_root"], manifest, DataResources(**config["data_resources"]),
                       cfg.eval_crop, rank, world)
    train_shard = ray.train.get_dataset_shard("train")
    steps_per_epoch = manifest.splits["train"].images // cfg.batch_size

    for epoch in range(start_epoch, cfg.epochs):
        lr = schedule.lr(epoch)
        set_lr(optimizer, lr, cfg.momentum_rule)
        seed_training_step(cfg.seed, rank, epoch)  # each rank's own dropout masks, the same on a rerun
        if config.get("epoch_clock"):  # the augmentation actors' crops for this epoch
            if rank == 0:
                set_epoch(config["epoch_clock"], epoch)
            if dist.is_available() and dist.is_initialized():
                dist.barrier()  # no rank starts the epoch's data before the clock says which
        started = time.perf_counter()
        progress = StepPrinter(f"epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch, cfg.log_every, lr, world,
                               started) if rank == 0 else None
        batches = train_batches(train_shard, cfg.per_worker_batch, device,  # what jobs/bench.py measures
                                decode_on_device=config.get("decode_on_device", False))
        stats = train_one_epoch(step_model, optimizer, batches, device, mean, amp=cfg.amp and on_gpu,
                                channels_last=cfg.channels_last and on_gpu, on_step=progress,
                                read_every=cfg.log_every, aux_weight=models.get(cfg.arch).aux_loss_weight)
        epoch_s = time.perf_counter() - started
        counts = evaluate(model.module if hasattr(model, "module") else model,
                          val.iter_torch_batches(batch_size=2 * cfg.per_worker_batch, device=device),
                          device, mean, amp=cfg.amp and on_gpu, channels_last=cfg.channels_last and on_gpu)
        metrics = epoch_metrics(stats, counts, lr, epoch_s, device, manifest.splits["val"].skipped)
        schedule.observe(metrics["val_top1_err"])
        history.append(metrics)
        if rank == 0:
            say(f"[train] epoch {epoch + 1}/{cfg.epochs}: loss {metrics['train_loss']:.4f} "
                f"val top-1 {metrics['val_top1_err']:.2f}% top-5 {metrics['val_top5_err']:.2f}% "
                f"{metrics['images_per_sec']:.1f} img/s, input stall {metrics['input_stall_frac']:.0%}")
        report(model, optimizer, schedule, epoch, history, metrics, cfg, manifest.num_classes, manifest.rgb_mean,
               rank)
        if mlflow_client is not None:  # after the checkpoint is safe: no epoch is logged twice
            tracking.log_epoch(mlflow_client, config["run_id"], epoch, metrics)


def checkpoint_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: LRSchedule,
                     epoch: int, history: list[dict], cfg: TrainConfig, num_classes: int,
                     rgb_mean: list[float]) -> dict[str, Any]:
    """Everything a run needs to go on after `epoch` (0-based) exactly as if uninterrupted:
    the weights, the optimiser's momentum buffers and per-group lrs, the schedule's state,
    the next epoch and the metrics so far."""
    net = model.module if hasattr(model, "module") else model
    return {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "epoch": epoch + 1, "history": history, "config": asdict(cfg),
            "model_args": model_args(cfg, num_classes), "rgb_mean": rgb_mean}


def restore_progress(state: dict[str, Any] | None, optimizer: torch.optim.Optimizer,
                     schedule: LRSchedule) -> tuple[int, list[dict]]:
    """The optimiser and schedule of a checkpoint (its weights are loaded before the
    model is wrapped); returns the epoch to start from and the metrics so far."""
    if state is None:
        return 0, []
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return state["epoch"], state["history"]


def report(model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: LRSchedule,
           epoch: int, history: list[dict], metrics: dict[str, float], cfg: TrainConfig,
           num_classes: int, rgb_mean: list[float], rank: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            save_checkpoint(tmp, checkpoint_state(model, optimizer, schedule, epoch, history, cfg, num_classes,
                                                  rgb_mean))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report({**metrics, "epoch": epoch + 1}, checkpoint=checkpoint)
