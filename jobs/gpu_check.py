"""The one command to run on a GPU machine: fills docs/performance.md's GPU tables.

    make gpu-check                                   # on the GPU machine (no Ray, no MLflow needed)
    python jobs/gpu_check.py --preset cpu-smoke      # the same code path on a CPU, in seconds

Makes the photo-like set without Ray (unless --data already holds a prepared set), then
measures the training step alone (eager and torch.compile'd; bf16 autocast and
channels_last on a GPU) as img/s and as the fraction of the GPU's bf16 peak; the CPU
augmentation on every core feeding the real training step (img/s end to end and
input_stall_frac); a few steps' loss on the device against the CPU's; and the ten-crop
evaluation. Writes every figure to --json and the section for docs/performance.md to
--markdown, and prints both. A section that fails is reported in both and the others
still run; the job then exits 1, as it does when the device's losses disagree with the
CPU's or the evaluation does not score every image once.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from alexnet import cli, flops, gpucheck
from alexnet.errors import UserError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


@dataclass
class GpuCheckConfig:
    data: str = field(default="data/photos-gpu", metadata={
        "help": "prepared data; made here from scikit-learn's sample photos when it holds no manifest.json"})
    photos: int = field(default=4000, metadata={"help": "photo-like images to make (one in ten for validation)"})
    rows_per_shard: int = field(default=128, metadata={
        "help": "rows per shard of the set made here (small, so that every loader worker gets shards)"})
    prepare_processes: int = field(default=0, metadata={"help": "processes preparing the set (0 = one per core)"})
    json: str = field(default="outputs/gpu-check.json", metadata={"help": "where to write every figure"})
    markdown: str = field(default="outputs/gpu-check.md", metadata={
        "help": "where to write the section for docs/performance.md"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": "auto: the GPU if there is one"})
    batch: int = field(default=256, metadata={"help": "images per training step"})
    steps: int = field(default=200, metadata={"help": "timed steps per measurement"})
    warmup_steps: int = field(default=40, metadata={
        "help": "steps before timing (compilation, cuDNN's choices, the loader's start)"})
    loader_workers: int = field(default=0, metadata={"help": "CPU augmentation processes (0 = one per core)"})
    compile_modes: tuple[str, ...] = field(default=("default", "reduce-overhead"), metadata={
        "help": f"torch.compile modes timed beside eager ({', '.join(COMPILE_MODES)}; empty: none)"})
    compile_backend: str = field(default="inductor", metadata={
        "help": "torch.compile backend (the cpu-smoke preset's aot_eager traces without generating code)"})
    seconds: float = field(default=3.0, metadata={"help": "seconds per CPU augmentation measurement"})
    correctness_batch: int = field(default=32, metadata={"help": "batch of the CPU/device loss comparison"})
    correctness_steps: int = field(default=3, metadata={"help": "steps of the CPU/device loss comparison"})
    peak_tflops: float = field(default=0.0, metadata={
        "help": "the device's dense bf16 peak in TFLOP/s (0 = look the GPU up)"})
    pipeline_ratio: float = field(default=gpucheck.CPU_PIPELINE_RATIO, metadata={
        "help": "Ray Data pipeline / in-process augmentation from the CPU benchmark, for the Ray estimate"})
    budget_s: float = field(default=420.0, metadata={
        "help": "seconds the check may take: a compile mode that would not fit is skipped, and says so"})

    def __post_init__(self) -> None:
        for flag in ("photos", "rows_per_shard", "batch", "steps", "warmup_steps", "correctness_batch",
                     "correctness_steps"):
            if getattr(self, flag) < 1:
                raise UserError(f"--{flag.replace('_', '-')} must be positive, got {getattr(self, flag)}")
        bad = [m for m in self.compile_modes if m not in COMPILE_MODES]
        if bad:
            raise UserError(f"--compile-modes: {bad[0]!r} is not one of {', '.join(COMPILE_MODES)}")
        if self.loader_workers < 0 or self.prepare_processes < 0 or self.peak_tflops < 0 or self.seconds <= 0:
            raise UserError("--loader-workers, --prepare-processes and --peak-tflops must be 0 or more, "
                            "--seconds positive")


# The whole check on a CPU in well under a minute: the same code path, tiny sizes.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu-smoke": {"device": "cpu", "photos": 40, "rows_per_shard": 6, "prepare_processes": 1, "batch": 4,
                  "steps": 1, "warmup_steps": 1, "loader_workers": 2, "compile_modes": ("default",),
                  "compile_backend": "aot_eager", "seconds": 0.1, "correctness_batch": 2,
                  "correctness_steps": 2, "json": "outputs/gpu-check-smoke.json",
                  "markdown": "outputs/gpu-check-smoke.md"},
}


def plan_for(cfg: GpuCheckConfig) -> gpucheck.Plan:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no GPU here")
    device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    peak = cfg.peak_tflops or (flops.bf16_peak_tflops(torch.cuda.get_device_name()) if device.type == "cuda"
                               else None)
    return gpucheck.Plan(
        data=cfg.data, photos=cfg.photos, rows_per_shard=cfg.rows_per_shard,
        prepare_processes=cfg.prepare_processes, device=device, batch=cfg.batch, steps=cfg.steps,
        warmup_steps=cfg.warmup_steps, loader_workers=cfg.loader_workers or os.cpu_count() or 1,
        compile_modes=cfg.compile_modes, compile_backend=cfg.compile_backend, seconds=cfg.seconds,
        correctness_batch=cfg.correctness_batch, correctness_steps=cfg.correctness_steps, peak_tflops=peak,
        pipeline_ratio=cfg.pipeline_ratio, budget_s=cfg.budget_s)


def main(argv: list[str] | None = None) -> int:
    cfg = cli.parse(GpuCheckConfig, __doc__, argv, presets=PRESETS)
    print(f"[gpu-check] config:\n{cli.describe(cfg)}", flush=True)
    plan = plan_for(cfg)

    def write(result: dict[str, Any]) -> None:
        Path(cfg.json).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.json).write_text(json.dumps(result, indent=2))

    result = gpucheck.run(plan, write)
    write(result)
    text = gpucheck.markdown(result)
    Path(cfg.markdown).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.markdown).write_text(text)
    print(json.dumps(result, indent=2))
    print(text, flush=True)
    print(f"[gpu-check] wrote {cfg.json} and {cfg.markdown}", flush=True)
    found = gpucheck.problems(result)
    for problem in found:
        print(f"[gpu-check] FAILED: {problem}", file=sys.stderr, flush=True)
    return 1 if found else 0


if __name__ == "__main__":
    cli.run(main)
