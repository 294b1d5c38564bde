"""The GPU check: one command on a GPU machine measures what docs/performance.md's GPU
section needs, without Ray or MLflow (`jobs/gpu_check.py`, `make gpu-check`).

Each section is one function that returns plain values for the JSON file, and
`markdown` turns them into the section for docs/performance.md:

- data: the photo-like set (`alexnet.data.photos`), prepared without Ray
  (`alexnet.data.local.prepare_local`);
- cpu_augment: the augmentation on one core and on all of them at once (the ceiling of
  any input pipeline on the machine the check runs on, as `jobs/bench.py` measures it);
- train_step: the real training step (`engine.train_one_epoch`, the paper's optimiser)
  on one batch kept on the device, eager and compiled, as img/s and as a fraction of
  the GPU's dense bf16 peak;
- end_to_end: the same step fed by the CPU augmentation in loader worker processes,
  img/s and `input_stall_frac` as training logs them; the loader alone; and what Ray
  would deliver, estimated from the CPU benchmark's pipeline ratio;
- gpu_decode: `--decode gpu`'s input path: the batched JPEG decode and crop on the device
  alone, and the training step fed by loader workers that only read and draw;
- correctness: a few steps' loss on the device against the CPU's, and the ten-crop
  evaluation on the validation split.

Sections that would run past the time budget are skipped and say so.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import platform
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from alexnet import bench, flops
from alexnet.config import TrainConfig
from alexnet.data import manifest as mf
from alexnet.data.images import JPEG_CODEC
from alexnet.data.local import prepare_local, train_loader, val_batches
from alexnet.engine import EpochStats, evaluate, train_one_epoch
from alexnet.errors import UserError
from alexnet.recipe import build_model, build_optimizer_for
from alexnet.store import as_location

EAGER = "eager"
COMPILE_RESERVE_S = 150  # at least this much of the budget left to start a compile mode
TAIL_RESERVE_S = 60  # and this much for the loader alone, correctness and the ten-crop evaluation
LOSS_RTOL, LOSS_ATOL = 0.02, 0.01  # bf16 autocast against fp32: a few steps' losses agree this closely
# docs/performance.md, photo-like shards on 2 vCPUs (2026-12-02, make bench-photos): the Ray
# Data pipeline delivered 0.85 of what in-process augmentation on all the same cores did
# (`pipeline_over_augment_all_cores`).
CPU_PIPELINE_RATIO = 0.85


@dataclass
class Plan:
    """What the check runs, resolved from the job's flags."""

    data: str
    photos: int
    rows_per_shard: int
    prepare_processes: int
    device: torch.device
    batch: int
    steps: int
    warmup_steps: int
    loader_workers: int
    compile_modes: tuple[str, ...]
    compile_backend: str
    seconds: float
    correctness_batch: int
    correctness_steps: int
    peak_tflops: float | None
    pipeline_ratio: float
    budget_s: float
    started: float = field(default_factory=time.perf_counter)

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def left_s(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)


def say(line: str) -> None:
    print(f"[gpu-check] {line}", flush=True)


def training_model(num_classes: int = 1000, dropout: float | None = None,
                   bias_init: str | None = None) -> torch.nn.Module:
    """The network `jobs/train.py` trains by default (TrainConfig's settings), with
    ImageNet's 1000 outputs whatever the data: the step costs what ImageNet's does."""
    cfg = TrainConfig()
    cfg = replace(cfg, dropout=cfg.dropout if dropout is None else dropout, bias_init=bias_init or cfg.bias_init)
    return build_model(cfg, num_classes)


def optimizer_for(model: torch.nn.Module) -> torch.optim.Optimizer:
    return build_optimizer_for(model, TrainConfig())


def environment(plan: Plan) -> dict[str, Any]:
    import torchvision

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"date": time.strftime("%Y-%m-%d"), "commit": commit, "python": platform.python_version(),
            "torch": torch.__version__, "torchvision": torchvision.__version__, "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name() if plan.on_gpu else "cpu", "cpu_count": os.cpu_count(),
            "jpeg_codec": JPEG_CODEC, "compile_modes": list(plan.compile_modes),
            "compile_backend": plan.compile_backend, "batch": plan.batch, "steps": plan.steps,
            "loader_workers": plan.loader_workers, "bf16_peak_tflops": plan.peak_tflops}


def make_data(plan: Plan) -> tuple[Path, mf.Manifest, dict[str, Any]]:
    """The photo-like set in `plan.data`, made here unless a prepared one is there."""
    from alexnet.data.photos import export_photos

    root = as_location(plan.data, "--data")
    if not isinstance(root, Path):
        raise UserError(f"--data {plan.data}: the GPU check prepares and reads its data on the local disk, "
                        "without Ray; pass a local directory")
    start = time.perf_counter()
    if (root / mf.MANIFEST).is_file():
        manifest, _ = mf.load(root)
        made = False
    elif root.exists():
        raise UserError(f"--data {root} exists but holds no {mf.MANIFEST}: remove it, or pass another --data")
    else:
        say(f"making {plan.photos} photo-like images in {root} ...")
        root.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root.parent) as src:
            export_photos(src, plan.photos)
            manifest = prepare_local(src, root, rows_per_shard=plan.rows_per_shard,
                                     processes=plan.prepare_processes)
        made = True
    train = manifest.splits["train"]
    return root, manifest, {"root": str(root), "made": made, "seconds": time.perf_counter() - start,
                            "train_images": train.images, "train_shards": len(train.shards),
                            "val_images": manifest.splits["val"].images}


def cpu_augment(plan: Plan, root: Path, manifest: mf.Manifest) -> dict[str, Any]:
    """The ceiling of any input pipeline here: `jobs/bench.py`'s in-process augmentation
    on one core, and one process per loader worker's core all at once."""
    jpegs = bench.load_jpegs(str(root), manifest, 1024)
    per_core = bench.augment_per_core(jpegs, manifest, plan.seconds)
    cores = plan.loader_workers
    all_cores = bench.augment_all_cores(jpegs, manifest, cores, plan.seconds)
    return {"augment_per_core": per_core, "augment_all_cores": all_cores, "cores": cores,
            "all_cores_over_per_core_x_cores": all_cores / (per_core * cores)}


def resident(batch: dict[str, torch.Tensor], device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    """The same batch, already on the device, for ever: the step with no input cost."""
    on_device = {k: v.to(device) for k, v in batch.items()}
    while True:
        yield on_device


def timed_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Iterator[dict],
                plan: Plan, mean: torch.Tensor) -> EpochStats:
    """`plan.warmup_steps` steps (compilation, cuDNN's choices, the loader's start), then
    `plan.steps` timed ones, both through `train_one_epoch` as training runs it."""
    def run(steps: int) -> EpochStats:
        return train_one_epoch(model, optimizer, itertools.islice(batches, steps), plan.device, mean,
                               amp=plan.on_gpu, channels_last=plan.on_gpu, read_every=TrainConfig().log_every)
    run(plan.warmup_steps)
    return run(plan.steps)


def rate_of(stats: EpochStats) -> dict[str, float]:
    images = stats.images + stats.bad_images
    total = max(stats.total_s, 1e-9)
    return {"img_per_sec": images / total, "input_stall_frac": stats.wait_s / total, "images": images,
            "seconds": stats.total_s}


def step_models(plan: Plan) -> Iterator[tuple[str, torch.nn.Module, torch.nn.Module]]:
    """(mode, model, the module the step calls) for eager and each compile mode, each a
    fresh network with the same initial weights, in the training run's layout."""
    for mode in (EAGER, *plan.compile_modes):
        torch.manual_seed(0)
        model = training_model().to(plan.device)
        if plan.on_gpu:
            model = model.to(memory_format=torch.channels_last)
        step = model if mode == EAGER else torch.compile(model, mode=mode, backend=plan.compile_backend)
        yield mode, model, step


def train_step_and_end_to_end(plan: Plan, root: Path, manifest: mf.Manifest,
                              mean: torch.Tensor) -> tuple[dict[str, Any], dict[str, Any]]:
    """For each mode: the step alone on a resident batch, then the same compiled module
    fed by the loader (one compilation per mode serves both). A compile mode starts only
    while the budget holds what the last one took (at least `COMPILE_RESERVE_S`) and
    `TAIL_RESERVE_S` for the sections after it; one that fails is reported, and the
    others still run."""
    gflop = flops.training_flops_per_image(training_model()) / 1e9
    first = next(train_loader(root, manifest, plan.batch, 0, torch.device("cpu")))
    step: dict[str, Any] = {"gflop_per_image": gflop, "modes": {}}
    e2e: dict[str, Any] = {"modes": {}}
    needed = COMPILE_RESERVE_S
    for mode, model, step_model in step_models(plan):
        if mode != EAGER and plan.left_s() < needed + TAIL_RESERVE_S:
            step["modes"][mode] = e2e["modes"][mode] = {"skipped": f"{plan.left_s():.0f} s of the budget left"}
            continue
        t0 = time.perf_counter()
        try:
            step["modes"][mode], e2e["modes"][mode] = step_and_end_to_end(plan, root, manifest, mean, mode, model,
                                                                          step_model, first, gflop)
        except Exception as e:  # noqa: BLE001 - one mode's failure must not cost the other figures
            traceback.print_exc()
            step["modes"][mode] = e2e["modes"][mode] = {"failed": f"{type(e).__name__}: {e}"[:500]}
        if mode != EAGER:
            needed = max(COMPILE_RESERVE_S, time.perf_counter() - t0)
    return step, e2e


def step_and_end_to_end(plan: Plan, root: Path, manifest: mf.Manifest, mean: torch.Tensor, mode: str,
                        model: torch.nn.Module, step_model: torch.nn.Module, first: dict[str, torch.Tensor],
                        gflop: float) -> tuple[dict[str, Any], dict[str, Any]]:
    say(f"training step alone, {mode} ...")
    optimizer = optimizer_for(model)
    t0 = time.perf_counter()
    alone = rate_of(timed_steps(step_model, optimizer, resident(first, plan.device), plan, mean))
    alone["first_call_s"] = time.perf_counter() - t0 - alone["seconds"]  # warm-up, compilation included
    if plan.peak_tflops:
        alone["peak_frac"] = flops.peak_fraction(alone["img_per_sec"], gflop * 1e9, plan.peak_tflops)
    say(f"training step fed by {plan.loader_workers} CPU augmentation workers, {mode} ...")
    loader = train_loader(root, manifest, plan.batch, plan.loader_workers, plan.device)
    fed = rate_of(timed_steps(step_model, optimizer, loader, plan, mean))
    fed["over_step_alone"] = fed["img_per_sec"] / alone["img_per_sec"]
    return alone, fed


def gpu_decode(plan: Plan, root: Path, manifest: mf.Manifest, mean: torch.Tensor) -> dict[str, Any]:
    """`--decode gpu`: the training worker's batched decode and crop on the device alone
    (`bench.decode_batched`), then the eager step fed by `loader_workers` processes that
    only read the shards and draw each row's crop, flip and offset (the actors' work
    under `--decode gpu`), each batch decoded on the device before its step
    (`device.decode_batch`): img/s end to end and `input_stall_frac`."""
    jpegs = bench.load_jpegs(str(root), manifest, 1024)
    alone = bench.decode_batched(jpegs, plan.device, plan.seconds, batch=plan.batch)
    torch.manual_seed(0)
    model = training_model().to(plan.device)
    if plan.on_gpu:
        model = model.to(memory_format=torch.channels_last)
    loader = train_loader(root, manifest, plan.batch, plan.loader_workers, plan.device, decode_on_device=True)
    fed = rate_of(timed_steps(model, optimizer_for(model), loader, plan, mean))
    return {"measured": True, "device": str(plan.device), "batch": plan.batch,
            "decode_img_per_sec": alone, "end_to_end": fed}


def loader_alone(plan: Plan, root: Path, manifest: mf.Manifest) -> dict[str, Any]:
    """The loader with no step behind it, each batch copied to the device as the step
    copies it: what the CPU side delivers."""
    loader = train_loader(root, manifest, plan.batch, plan.loader_workers, plan.device)
    for batch in itertools.islice(loader, plan.warmup_steps):
        batch["image"].to(plan.device, non_blocking=True)
    start, images = time.perf_counter(), 0
    for batch in itertools.islice(loader, plan.steps):
        images += int(batch["image"].to(plan.device, non_blocking=True).shape[0])
    if plan.on_gpu:
        torch.cuda.synchronize()
    return {"img_per_sec": images / (time.perf_counter() - start), "images": images}


def step_losses(model: torch.nn.Module, batches: list[dict], device: torch.device, mean: torch.Tensor,
                on_gpu: bool) -> list[float]:
    """Each step's mean loss (read after every step) from `train_one_epoch`."""
    sums: list[tuple[float, int]] = []
    train_one_epoch(model, optimizer_for(model), batches, device, mean, amp=on_gpu, channels_last=on_gpu,
                    read_every=1, on_step=lambda _, s: sums.append((s.loss_sum, s.images)))
    totals = [(0.0, 0), *sums]
    return [(b[0] - a[0]) / max(b[1] - a[1], 1) for a, b in itertools.pairwise(totals)]


def correctness(plan: Plan, root: Path, manifest: mf.Manifest, mean: torch.Tensor) -> dict[str, Any]:
    """A few steps from the same weights on the same batches, on the CPU in fp32 and on
    the device as training runs there (bf16 autocast, channels_last): the losses agree
    within bf16's tolerance. Dropout is off in both, since each device draws its masks
    from its own generator; and the biases start at Caffe's 0.1, whose losses fall
    steadily, where the paper's 1 makes the second step's loss jump to ~50 (photo-like
    batches, 2026-11-29), a trajectory that amplifies any rounding."""
    batches = list(itertools.islice(train_loader(root, manifest, plan.correctness_batch, 0, torch.device("cpu")),
                                    plan.correctness_steps))
    torch.manual_seed(0)
    reference = training_model(dropout=0.0, bias_init="caffe")
    on_device = copy.deepcopy(reference).to(plan.device)
    if plan.on_gpu:
        on_device = on_device.to(memory_format=torch.channels_last)
    cpu = step_losses(reference, batches, torch.device("cpu"), mean.cpu(), on_gpu=False)
    dev = step_losses(on_device, batches, plan.device, mean, plan.on_gpu)
    agree = all(math.isfinite(d) and abs(d - c) <= LOSS_RTOL * abs(c) + LOSS_ATOL for c, d in zip(cpu, dev,
                                                                                                  strict=True))
    return {"cpu_losses": cpu, "device_losses": dev, "agree": agree, "rtol": LOSS_RTOL, "atol": LOSS_ATOL,
            "max_abs_diff": max(abs(d - c) for c, d in zip(cpu, dev, strict=True))}


def ten_crop_eval(plan: Plan, root: Path, manifest: mf.Manifest, mean: torch.Tensor) -> dict[str, Any]:
    """`engine.evaluate` with ten crops over the validation split, on a network trained
    the plan's warm-up steps here: it runs, scores every image once, and how fast."""
    torch.manual_seed(0)
    model = training_model().to(plan.device)
    if plan.on_gpu:
        model = model.to(memory_format=torch.channels_last)
    loader = train_loader(root, manifest, plan.batch, min(plan.loader_workers, 2), plan.device)
    train_one_epoch(model, optimizer_for(model), itertools.islice(loader, plan.warmup_steps), plan.device, mean,
                    amp=plan.on_gpu, channels_last=plan.on_gpu)
    del loader
    start = time.perf_counter()
    counts = evaluate(model, val_batches(root, manifest, 64, "ten"), plan.device, mean, amp=plan.on_gpu,
                      channels_last=plan.on_gpu).tolist()
    seconds = time.perf_counter() - start
    images = int(counts[2])
    return {"images": images, "expected_images": manifest.splits["val"].images, "undecodable": int(counts[3]),
            "trained_steps": plan.warmup_steps,
            "top1_err": 100 * (1 - counts[0] / max(images, 1)), "img_per_sec": images / seconds,
            "ok": images == manifest.splits["val"].images and counts[3] == 0}


def attempt(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`fn()`'s figures, or what made it fail: a check run once on a rare machine keeps
    every other section's figures."""
    say(f"{name} ...")
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - reported in both outputs, and the job exits 1
        traceback.print_exc()
        return {"failed": f"{type(e).__name__}: {e}"[:500]}


def run(plan: Plan, write: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every section in turn; `write` gets the figures so far after each one, so that a
    check stopped by its time limit still leaves what it measured."""
    result: dict[str, Any] = {"environment": environment(plan)}
    root, manifest, result["data"] = make_data(plan)
    mean = torch.tensor(manifest.rgb_mean, dtype=torch.float32, device=plan.device)
    result["cpu_augment"] = attempt(f"CPU augmentation on 1 and {plan.loader_workers} cores",
                                    lambda: cpu_augment(plan, root, manifest))
    result["train_step"], result["end_to_end"] = train_step_and_end_to_end(plan, root, manifest, mean)
    result["end_to_end"]["loader_alone"] = attempt("the loader alone", lambda: loader_alone(plan, root, manifest))
    result["end_to_end"]["ray_estimate"] = attempt("the Ray estimate", lambda: ray_estimate(plan, result))
    result["gpu_decode"] = attempt("--decode gpu: decode on the device, fed by workers that only read",
                                   lambda: gpu_decode(plan, root, manifest, mean))
    if write is not None:
        write(result)
    result["correctness"] = attempt("correctness: the device's losses against the CPU's",
                                    lambda: correctness(plan, root, manifest, mean))
    if write is not None:
        write(result)
    result["ten_crop_eval"] = attempt("ten-crop evaluation", lambda: ten_crop_eval(plan, root, manifest, mean))
    result["total_s"] = time.perf_counter() - plan.started
    return result


def problems(result: dict[str, Any]) -> list[str]:
    """What failed or disagreed, by section: the job exits 1 when there is anything."""
    found = [f"{path}: {value['failed']}" for path, value in _sections(result) if "failed" in value]
    if result["correctness"].get("agree") is False:
        found.append("correctness: the device's losses disagree with the CPU's")
    if result["ten_crop_eval"].get("ok") is False:
        found.append("ten_crop_eval: not every validation image was scored once")
    return found


def _sections(result: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for key, value in result.items():
        if isinstance(value, dict):
            yield prefix + key, value
            yield from _sections(value, f"{prefix}{key}.")


def ray_estimate(plan: Plan, result: dict[str, Any]) -> dict[str, Any]:
    """What the Ray Data pipeline would feed here: `pipeline_ratio` (the CPU benchmark's
    pipeline / in-process augmentation on the same cores) of the checked machine's in-process
    augmentation on all its loader cores; end to end, the slower of that and the step."""
    rates = [m["img_per_sec"] for m in result["train_step"]["modes"].values() if "img_per_sec" in m]
    ray_input = plan.pipeline_ratio * result["cpu_augment"]["augment_all_cores"]
    return {"pipeline_ratio": plan.pipeline_ratio, "input_img_per_sec": ray_input,
            "end_to_end_img_per_sec": min([ray_input, max(rates)]) if rates else ray_input}


def _fmt(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _failed(section: dict[str, Any]) -> str | None:
    return section.get("failed") or section.get("skipped") and f"skipped: {section['skipped']}"


def gpu_decode_line(g: dict[str, Any], workers: int) -> str:
    if _failed(g):
        return f"Decoding on the device (`--decode gpu`): {_failed(g)}."
    e2e = g["end_to_end"]
    return (f"Decoding on the device (`--decode gpu`): batched decode and crop alone {_fmt(g['decode_img_per_sec'])} "
            f"img/s on {g['device']} (batch {g['batch']}); the eager step fed by {workers} workers that only read and "
            f"draw, each batch decoded on the device: {_fmt(e2e['img_per_sec'])} img/s, input_stall_frac "
            f"{e2e['input_stall_frac']:.1%}.")


def markdown(r: dict[str, Any]) -> str:
    """The section for docs/performance.md, every figure from `r`; a section that failed
    or was skipped says so in its place."""
    env, data = r["environment"], r["data"]
    lines = [f"### {env['device']}, {env['date']} (commit {env['commit']})", "",
             f"`make gpu-check`: Python {env['python']}, torch {env['torch']}, torchvision {env['torchvision']}, "
             f"CUDA {env['cuda']}, {env['cpu_count']} CPUs, JPEG codec {env['jpeg_codec']}; "
             f"photo-like set of {data['train_images']:,} training images in {data['train_shards']} shards; "
             f"batch {env['batch']}, {env['steps']} timed steps after a warm-up; torch.compile "
             f"{', '.join(env['compile_modes']) or 'not run'} ({env['compile_backend']}); "
             f"bf16 autocast and channels_last on a GPU.", "",
             "| training step alone | img/s | of bf16 peak | first call (warm-up, compile) |", "|---|---|---|---|"]
    for mode, m in r["train_step"]["modes"].items():
        if _failed(m):
            lines.append(f"| {mode} | {_failed(m)} | | |")
            continue
        frac = m.get("peak_frac")
        lines.append(f"| {mode} | {_fmt(m['img_per_sec'])} | {'-' if frac is None else f'{frac:.1%}'} "
                     f"| {m['first_call_s']:.1f} s |")
    a = r["cpu_augment"]
    lines.append("")
    if _failed(a):
        lines.append(f"CPU augmentation: {_failed(a)}.")
    else:
        lines.append(f"CPU augmentation: {_fmt(a['augment_per_core'])} img/s on one core, "
                     f"{_fmt(a['augment_all_cores'])} img/s on {a['cores']} cores at once "
                     f"({a['all_cores_over_per_core_x_cores']:.2f} x one core x {a['cores']}).")
    lines += ["", f"| fed by {env['loader_workers']} CPU augmentation workers | img/s | input_stall_frac "
              "| of the step alone |", "|---|---|---|---|"]
    for mode, m in r["end_to_end"]["modes"].items():
        if _failed(m):
            lines.append(f"| {mode} | {_failed(m)} | | |")
            continue
        lines.append(f"| {mode} | {_fmt(m['img_per_sec'])} | {m['input_stall_frac']:.1%} "
                     f"| {m['over_step_alone']:.2f} |")
    alone, ray = r["end_to_end"]["loader_alone"], r["end_to_end"]["ray_estimate"]
    lines += ["", f"The loader alone (no step): {_failed(alone) or _fmt(alone['img_per_sec']) + ' img/s'}. "
              + (f"Through Ray Data instead: {_failed(ray)}." if _failed(ray) else
                 f"Through Ray Data instead (estimated: {ray['pipeline_ratio']:.2f}, the CPU benchmark's "
                 "pipeline / in-process ratio, x the in-process rate on all cores): "
                 f"{_fmt(ray['input_img_per_sec'])} img/s of input, {_fmt(ray['end_to_end_img_per_sec'])} img/s "
                 "end to end."), "", gpu_decode_line(r["gpu_decode"], env["loader_workers"]), ""]
    c = r["correctness"]
    if _failed(c):
        lines.append(f"Correctness: {_failed(c)}.")
    else:
        lines.append(f"Correctness: losses over {len(c['cpu_losses'])} steps, CPU fp32 "
                     f"{', '.join(f'{v:.4f}' for v in c['cpu_losses'])}; device "
                     f"{', '.join(f'{v:.4f}' for v in c['device_losses'])}; max difference "
                     f"{c['max_abs_diff']:.4f} ({'agree' if c['agree'] else 'DO NOT agree'} within "
                     f"{c['rtol']:.0%} + {c['atol']}).")
    t = r["ten_crop_eval"]
    if _failed(t):
        lines.append(f"Ten-crop evaluation: {_failed(t)}.")
    else:
        lines.append(f"Ten-crop evaluation: {t['images']} of {t['expected_images']} validation images scored "
                     f"({t['undecodable']} undecodable), {_fmt(t['img_per_sec'])} img/s, top-1 error "
                     f"{t['top1_err']:.1f}% after {t['trained_steps']} training steps "
                     f"({'ok' if t['ok'] else 'NOT ok'}).")
    lines += ["", f"Total {r.get('total_s', 0):.0f} s.", ""]
    return "\n".join(lines)
