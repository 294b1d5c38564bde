"""Measure the input pipeline and the model against their limits, in one run.

    python jobs/bench.py --json bench.json                # the embedded default's shards
    python jobs/bench.py --data /data/imagenet-shards --scaling
    python jobs/bench.py --data s3://bucket/digits --compare-data data/digits   # the store against local disk

Prints a table with the ratios augment/decode, pipeline/(augment x CPUs) and
augment/baseline, and writes every figure to the JSON file. The pipeline is also measured
through the iterator the training loop runs (`--train-batch` rows on the training device:
the GPU where there is one), beside the headline that takes whole blocks. On a GPU the model step runs
with bf16 autocast and channels_last, eager and torch.compile'd, and is reported as the
fraction of the GPU's bf16 peak it reaches (--peak-tflops for GPUs it does not know).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch

from alexnet import bench, cli, flops
from alexnet.config import TrainConfig
from alexnet.data import manifest as mf
from alexnet.errors import UserError
from alexnet.store import open_location


@dataclass
class BenchConfig:
    data: str = field(default="data/digits", metadata={
        "help": "prepared data directory, or its object-store URI (s3://bucket/prefix)"})
    compare_data: str = field(default="", metadata={
        "help": "another copy of the same shards (e.g. on local disk beside --data s3://...): its pipeline rate "
                "is measured the same way in this run, and the ratio printed"})
    json: str = field(default="bench.json", metadata={"help": "where to write every figure"})
    images: int = field(default=1024, metadata={"help": "images decoded per in-process pass"})
    seconds: float = field(default=5.0, metadata={"help": "minimum seconds per in-process measurement"})
    pipeline_cpus: int = field(default=0, metadata={"help": "CPUs for the Ray Data pipeline (0 = all)"})
    pipeline_images: int = field(default=100_000, metadata={
        "help": "images counted per pipeline measurement, after its warm-up (start-up is reported apart)"})
    pipeline_warmup: int = field(default=0, metadata={
        "help": "images streamed before counting, per execution (0 = enough to fill the object store once)"})
    scaling: bool = field(default=False, metadata={"help": "repeat the pipeline for 1..N CPUs"})
    train_batch: int = field(default=TrainConfig().per_worker_batch, metadata={
        "help": "batch of the training iterator measured (a training worker's: --batch-size / --workers)"})
    model_batch: int = field(default=0, metadata={"help": "batch for the model step (0 = 32 on CPU, 256 on GPU)"})
    model_steps: int = field(default=0, metadata={"help": "timed steps per model (0 = 3 on CPU, 50 on GPU)"})
    compile: Literal["auto", "on", "off"] = field(default="auto", metadata={
        "help": "also time torch.compile'd models (auto = on a GPU; compiling on a CPU takes minutes)"})
    peak_tflops: float = field(default=0.0, metadata={
        "help": "the device's dense bf16 peak in TFLOP/s for model_step_peak_frac (0 = look the GPU up)"})

    def __post_init__(self) -> None:
        if self.images < 64:
            raise UserError(f"--images must be at least 64, got {self.images}")
        if self.pipeline_images < 1:
            raise UserError(f"--pipeline-images must be positive, got {self.pipeline_images}")
        if self.peak_tflops < 0:
            raise UserError(f"--peak-tflops must be 0 (look the GPU up) or positive, got {self.peak_tflops}")
        if self.train_batch < 1:
            raise UserError(f"--train-batch must be positive, got {self.train_batch}")
        if self.pipeline_warmup < 0:
            raise UserError(f"--pipeline-warmup must be 0 (fill the object store) or more, got {self.pipeline_warmup}")


def main(argv: list[str] | None = None) -> int:
    cfg = cli.parse(BenchConfig, __doc__, argv)
    print(f"[bench] config:\n{cli.describe(cfg)}", flush=True)
    root = open_location(cfg.data)
    manifest, _ = mf.load(root)
    jpegs = bench.load_jpegs(str(root), manifest, cfg.images)
    cpus = cfg.pipeline_cpus or os.cpu_count() or 1
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    r: dict[str, object] = {"images_in_pass": len(jpegs), "cpu_count": os.cpu_count()}
    print("[bench] decode ...", flush=True)
    r["decode_per_core"] = bench.decode_per_core(jpegs, cfg.seconds)
    print(f"[bench] batched decode on {device} (--decode gpu) ...", flush=True)
    r["decode_batched_img_per_sec"] = bench.decode_batched(jpegs, device, cfg.seconds)
    r["decode_batched_device"] = str(device)
    print("[bench] augment ...", flush=True)
    r["augment_per_core"] = bench.augment_per_core(jpegs, manifest, cfg.seconds)
    print(f"[bench] augment on {cpus} cores at once ...", flush=True)
    r["augment_all_cores"] = bench.augment_all_cores(jpegs, manifest, cpus, cfg.seconds)
    print("[bench] torchvision DataLoader baseline ...", flush=True)
    r["baseline_per_worker"] = bench.baseline_per_worker(jpegs, manifest, cfg.seconds)
    print(f"[bench] Ray Data pipeline on {cpus} CPUs ...", flush=True)
    p = bench.pipeline_throughput(str(root), manifest, cpus, cfg.pipeline_images, cfg.pipeline_warmup,
                                  train_batch=cfg.train_batch, device=device)
    r.update(pipeline_img_per_sec=p.img_per_sec, pipeline_cpus=p.cpus, pipeline_first_batch_s=p.first_batch_s,
             pipeline_images=p.images, pipeline_cold_img_per_sec=p.cold_img_per_sec,
             pipeline_iter_torch_batches_img_per_sec=p.iter_torch_batches_img_per_sec, pipeline_blocks=p.blocks,
             pipeline_train_iter_img_per_sec=p.train_iter_img_per_sec,
             pipeline_train_iter_local_shuffle_img_per_sec=p.train_iter_local_shuffle_img_per_sec,
             train_batch=p.train_batch, train_iter_device=str(device))
    if cfg.compare_data:
        other = open_location(cfg.compare_data, "--compare-data")
        print(f"[bench] Ray Data pipeline on {cpus} CPUs, shards in {other} ...", flush=True)
        other_manifest, _ = mf.load(other, flag="--compare-data")
        c = bench.pipeline_throughput(str(other), other_manifest, cpus, cfg.pipeline_images, cfg.pipeline_warmup,
                                      compare=False)
        r.update(compare_data=str(other), compare_data_pipeline_img_per_sec=c.img_per_sec,
                 compare_data_first_batch_s=c.first_batch_s)
    if cfg.scaling:  # the headline only
        r["scaling"] = {n: asdict(bench.pipeline_throughput(str(root), manifest, n, cfg.pipeline_images,
                                                            cfg.pipeline_warmup, compare=False))
                        for n in range(1, cpus + 1)}
    print(f"[bench] model training step on {device} ...", flush=True)
    r.update(model_figures(cfg, device))
    r["ratios"] = {
        "augment_over_decode": r["augment_per_core"] / r["decode_per_core"],
        "pipeline_over_augment_x_cpus": p.img_per_sec / (r["augment_per_core"] * p.cpus),
        "augment_over_baseline": r["augment_per_core"] / r["baseline_per_worker"],
        "augment_all_cores_over_augment_x_cpus": r["augment_all_cores"] / (r["augment_per_core"] * cpus),
        "pipeline_over_augment_all_cores": p.img_per_sec / r["augment_all_cores"],
        "train_iter_over_pipeline": p.train_iter_img_per_sec / p.img_per_sec,
        "train_iter_local_shuffle_over_pipeline": p.train_iter_local_shuffle_img_per_sec / p.img_per_sec,
        "train_iter_over_train_iter_local_shuffle": p.train_iter_img_per_sec / p.train_iter_local_shuffle_img_per_sec,
    }
    if cfg.compare_data:
        r["ratios"]["pipeline_over_compare_data"] = p.img_per_sec / r["compare_data_pipeline_img_per_sec"]
    print_table(r)
    with open(cfg.json, "w") as f:
        json.dump(r, f, indent=2)
    print(f"[bench] wrote {cfg.json}", flush=True)
    return 0


def model_figures(cfg: BenchConfig, device: torch.device) -> dict[str, object]:
    """Training-step rates (eager, and compiled where asked), FLOPs per image, and the
    fraction of the device's bf16 peak; bf16 autocast and channels_last on a GPU."""
    on_gpu = device.type == "cuda"
    torch.set_num_threads(os.cpu_count() or 1)
    batch, steps = cfg.model_batch or (256 if on_gpu else 32), cfg.model_steps or (50 if on_gpu else 3)
    rates = {"eager": bench.model_step_throughput(device, batch, steps, amp=on_gpu, channels_last=on_gpu)}
    if cfg.compile == "on" or (cfg.compile == "auto" and on_gpu):
        print("[bench] model training step, torch.compile ...", flush=True)
        rates["compiled"] = bench.model_step_throughput(device, batch, steps, amp=on_gpu, channels_last=on_gpu,
                                                        compiled=True)
    name = torch.cuda.get_device_name() if on_gpu else "cpu"
    peak = cfg.peak_tflops or (flops.bf16_peak_tflops(name) if on_gpu else None)
    gflop = bench.model_training_gflop()
    peak_frac = None if peak is None else {
        f"{model}{'' if mode == 'eager' else '_compiled'}": flops.peak_fraction(rate, gflop[model] * 1e9, peak)
        for mode, by_model in rates.items() for model, rate in by_model.items()}
    return {"model_step_img_per_sec": rates["eager"], "model_step_compiled_img_per_sec": rates.get("compiled"),
            "model_batch": batch, "model_train_gflop_per_image": gflop, "bf16_peak_tflops": peak,
            "model_step_peak_frac": peak_frac, "device": name}


def print_table(r: dict) -> None:
    rows = [
        ("decode_per_core", f"{r['decode_per_core']:.0f} img/s", "ceiling: libjpeg-turbo, 1 core"),
        ("decode_batched_img_per_sec", f"{r['decode_batched_img_per_sec']:.0f} img/s",
         f"{r['decode_batched_device']}: --decode gpu's batched decode and crop, "
         f"{r['decode_batched_img_per_sec'] / r['decode_per_core']:.2f} x decode_per_core"),
        ("augment_per_core", f"{r['augment_per_core']:.0f} img/s",
         f"{r['ratios']['augment_over_decode']:.2f} x decode"),
        ("baseline_per_worker", f"{r['baseline_per_worker']:.0f} img/s",
         f"augment is {r['ratios']['augment_over_baseline']:.2f} x this"),
        ("augment_all_cores", f"{r['augment_all_cores']:.0f} img/s",
         f"{r['ratios']['augment_all_cores_over_augment_x_cpus']:.2f} x augment x {r['pipeline_cpus']:g}, "
         "one process per core at once"),
        ("pipeline_img_per_sec", f"{r['pipeline_img_per_sec']:.0f} img/s",
         f"{r['ratios']['pipeline_over_augment_x_cpus']:.2f} x augment x {r['pipeline_cpus']:g} CPUs; "
         f"{r['ratios']['pipeline_over_augment_all_cores']:.2f} x augment_all_cores"),
        ("pipeline_first_batch_s", f"{r['pipeline_first_batch_s']:.1f} s", "start-up, not in the rate"),
        ("pipeline_cold_img_per_sec", f"{r['pipeline_cold_img_per_sec']:.0f} img/s",
         "first execution: object store pages still being zero-filled"),
        ("pipeline_iter_torch_batches", f"{r['pipeline_iter_torch_batches_img_per_sec']:.0f} img/s",
         "same stream through Ray's iter_torch_batches (copies batches)"),
        ("pipeline_train_iter", f"{r['pipeline_train_iter_img_per_sec']:.0f} img/s",
         f"{r['ratios']['train_iter_over_pipeline']:.2f} x pipeline; the training loop's iterator "
         f"(batch {r['train_batch']} on {r['train_iter_device']}, rows shuffled by the actors)"),
        ("pipeline_train_iter_local_shuffle", f"{r['pipeline_train_iter_local_shuffle_img_per_sec']:.0f} img/s",
         f"{r['ratios']['train_iter_local_shuffle_over_pipeline']:.2f} x pipeline; the iterator it replaced "
         f"(local shuffle buffer of {bench.LOCAL_SHUFFLE_BATCHES} batches)"),
    ]
    if "compare_data" in r:
        rows += [("compare_data_pipeline", f"{r['compare_data_pipeline_img_per_sec']:.0f} img/s",
                  f"the same pipeline on {r['compare_data']}; --data's is "
                  f"{r['ratios']['pipeline_over_compare_data']:.2f} x this"),
                 ("compare_data_first_batch_s", f"{r['compare_data_first_batch_s']:.1f} s",
                  f"start-up on {r['compare_data']}, not in the rate")]
    for key, suffix in (("model_step_img_per_sec", ""), ("model_step_compiled_img_per_sec", "_compiled")):
        for model, rate in (r[key] or {}).items():
            frac = (r["model_step_peak_frac"] or {}).get(model + suffix)
            peak = "" if frac is None else f", {frac:.1%} of {r['bf16_peak_tflops']:g} TFLOP/s bf16"
            rows.append((f"model_step[{model}{suffix}]", f"{rate:.1f} img/s",
                         f"{r['device']}, {r['model_train_gflop_per_image'][model]:.2f} GFLOP/img{peak}"))
    for name, value, note in rows:
        print(f"{name:<34} {value:>14}   {note}")
    if r["pipeline_blocks"] < bench.STEADY_BLOCKS:
        print(f"warning: the pipeline rate counts only {r['pipeline_blocks']} block(s), which the actors "
              "make side by side, so it is not a steady-state figure; raise --pipeline-images", flush=True)
    for n, s in (r.get("scaling") or {}).items():
        print(f"scaling: {n} CPU(s) {s['img_per_sec']:.0f} img/s")


if __name__ == "__main__":
    cli.run(main)
