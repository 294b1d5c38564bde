"""One epoch of training and one pass of evaluation: plain PyTorch over an iterable of
batches (dicts of tensors from the Ray Data pipeline), testable without Ray."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.data.device import ten_crops, to_input
from alexnet.metrics import topk_correct

Batch = dict[str, torch.Tensor]


class Diverged(RuntimeError):
    """The loss is no longer finite: more epochs cannot recover, so stop the run."""


@dataclass
class EpochStats:
    loss_sum: float = 0.0  # summed over valid images
    images: int = 0  # valid images trained on
    bad_images: int = 0  # rows that failed to decode, left out of the loss
    correct: int = 0  # valid images whose top-1 class was right, as the step saw them (dropout, augmentation)
    wait_s: float = 0.0  # time spent waiting for the next batch
    total_s: float = 0.0


def autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA (no loss scaling needed); nothing on CPU."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def step_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor,
              device: torch.device, amp: bool, aux_weight: float = 0.0,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean loss over the valid rows, summed loss, valid rows, valid rows whose top-1
    class is right), all on the device: nothing here waits for the host, so the step runs
    as one graph (`torch.compile(fullgraph=True)` traces it) and a GPU is never stalled
    by a read-back. The last is the training error the paper's figure 1 plots.

    A network with auxiliary classifiers (GoogLeNet) returns ``(logits, *aux_logits)`` in
    training; each auxiliary loss is added at `aux_weight` (its registry entry's)."""
    with autocast(device, amp):
        out = model(x)
    logits, aux = (out[0], out[1:]) if isinstance(out, tuple) else (out, ())
    if aux and not aux_weight:
        raise ValueError("the network returns auxiliary logits but no aux_weight was given for their loss")
    per_image = F.cross_entropy(logits.float(), y, reduction="none")
    for a in aux:
        per_image = per_image + aux_weight * F.cross_entropy(a.float(), y, reduction="none")
    per_image = per_image * valid
    n_valid = valid.sum()
    summed = per_image.sum()
    correct = ((logits.detach().argmax(1) == y) & valid).sum()
    return summed / n_valid.clamp(min=1), summed.detach(), n_valid, correct


def train_one_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Batch],
    device: torch.device, mean: torch.Tensor, *, amp: bool = False,
    channels_last: bool = False, on_step: Callable[[int, EpochStats], None] | None = None,
    read_every: int = 10, aux_weight: float = 0.0,
) -> EpochStats:
    """One pass over `batches`. The loss and image counts stay on the device and are read
    every `read_every` steps (then `on_step` sees them, and a loss that is no longer
    finite stops the run) and at the end of the epoch: one host synchronisation per
    interval instead of several per step. `aux_weight`: see `step_loss`."""
    model.train()
    stats = EpochStats()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_valid = torch.zeros((), dtype=torch.int64, device=device)
    n_correct = torch.zeros((), dtype=torch.int64, device=device)
    rows = 0
    start = tick = time.perf_counter()
    step = -1
    for step, batch in enumerate(batches):
        stats.wait_s += time.perf_counter() - tick
        x = to_input(batch["image"].to(device, non_blocking=True), mean,
                     batch["offset"].to(device, non_blocking=True), batch["flip"].to(device, non_blocking=True))
        x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        y = batch["label"].to(device, non_blocking=True)
        valid = batch["valid"].to(device, non_blocking=True)
        loss, summed, n, correct = step_loss(model, x, y, valid, device, amp, aux_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # every rank steps, even on an all-invalid batch, to keep DDP in step
        optimizer.step()
        loss_sum += summed
        n_valid += n
        n_correct += correct
        rows += len(valid)
        if (step + 1) % read_every == 0:
            read_stats(stats, loss_sum, n_valid, n_correct, rows, step)
            if on_step is not None:
                on_step(step, stats)
        tick = time.perf_counter()
    read_stats(stats, loss_sum, n_valid, n_correct, rows, step)
    stats.total_s = time.perf_counter() - start
    return stats


def read_stats(stats: EpochStats, loss_sum: torch.Tensor, n_valid: torch.Tensor, n_correct: torch.Tensor,
               rows: int, step: int) -> None:
    """Copy the device's running sums into `stats` (one synchronisation), or stop a run
    whose loss is no longer finite."""
    sums = torch.stack([loss_sum, n_valid.double(), n_correct.double()]).tolist()
    stats.loss_sum, stats.images, stats.correct = sums[0], int(sums[1]), int(sums[2])
    stats.bad_images = rows - stats.images
    if not math.isfinite(stats.loss_sum):
        raise Diverged(f"training loss is {stats.loss_sum} by step {step + 1}; lower --lr "
                       "(or use --warmup-epochs)")


@torch.no_grad()
def predict(model: nn.Module, batch: Batch, device: torch.device, mean: torch.Tensor,
            *, amp: bool = False, channels_last: bool = False, logits: bool = False) -> torch.Tensor:
    """Softmax probabilities (or logits); 256x256 images are scored as ten 224 crops,
    averaged in the space returned."""
    x = to_input(batch["image"].to(device, non_blocking=True), mean)
    n, crops = x.shape[0], 1
    if x.shape[-1] != 224:
        x, crops = ten_crops(x), 10
    x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    with autocast(device, amp):
        scores = model(x).float()
    if not logits:
        scores = scores.softmax(1)
    return scores.view(n, crops, -1).mean(1)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[Batch], device: torch.device,
             mean: torch.Tensor, *, amp: bool = False, channels_last: bool = False) -> torch.Tensor:
    """Sums [top-1 correct, top-5 correct, images, undecodable, loss] over this rank's rows.
    Undecodable images count as errors: the denominator is the whole validation set. The
    loss is the cross-entropy of the (crop-averaged) probabilities over the decoded
    images: unlike the error, it does not tie on a small validation set."""
    model.eval()
    counts = torch.zeros(5, dtype=torch.float64, device=device)  # read once, at the end
    for batch in batches:
        probs = predict(model, batch, device, mean, amp=amp, channels_last=channels_last)
        valid, label = batch["valid"].to(device), batch["label"].to(device)
        counts[:2] += topk_correct(probs, label, mask=valid)
        counts[2] += len(valid)
        counts[3] += (~valid).sum()
        picked = probs.gather(1, label.view(-1, 1)).squeeze(1).double()
        counts[4] += torch.where(valid, -picked.clamp_min(1e-300).log(), 0.0).sum()
    return counts.cpu()
