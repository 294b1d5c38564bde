"""The benchmark runs on a tiny dataset and writes every figure; nothing here is timed.

jobs/bench.py times the model on whatever the host has (the GPU when there is one, with
torch.compile too under --compile auto), so the end-to-end test asserts what it does on
this host; the compiled-step test means the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import torch

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"decode_per_core", "decode_batched_img_per_sec", "decode_batched_device", "augment_per_core",
        "pipeline_img_per_sec", "pipeline_cpus",
        "pipeline_first_batch_s", "pipeline_cold_img_per_sec", "baseline_per_worker", "model_step_img_per_sec",
        "pipeline_iter_torch_batches_img_per_sec", "augment_all_cores", "device", "ratios",
        "model_step_compiled_img_per_sec", "model_train_gflop_per_image", "bf16_peak_tflops", "model_step_peak_frac",
        "pipeline_blocks", "pipeline_train_iter_img_per_sec", "pipeline_train_iter_local_shuffle_img_per_sec",
        "train_batch", "train_iter_device", "compare_data", "compare_data_pipeline_img_per_sec",
        "compare_data_first_batch_s"}


def test_bench_writes_every_key(ray_session, tiny_data: Path, s3_server, tmp_path: Path) -> None:
    """With the shards in a bucket of a real S3-compatible server, and the same shards on
    disk to compare the pipeline with (`make bench-s3`)."""
    out = tmp_path / "bench.json"
    s3_server.upload(tiny_data, "s3://bench-tests/tiny")
    done = subprocess.run(
        [sys.executable, "jobs/bench.py", "--data", "s3://bench-tests/tiny", "--compare-data", str(tiny_data),
         "--json", str(out), "--seconds", "0.2",
         "--pipeline-images", "100", "--pipeline-warmup", "100", "--pipeline-cpus", "1",
         "--model-batch", "2", "--model-steps", "1", "--peak-tflops", "2.5", "--train-batch", "16"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,  # on the session's Ray, as on a running cluster
        env={**os.environ, **s3_server.env, "RAY_ADDRESS": ray.get_runtime_context().gcs_address})
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert KEYS <= set(figures)
    models = {"grouped", "ungrouped", "grouped_torch_lrn", "grouped_no_lrn", "torchvision"}
    assert set(figures["model_step_img_per_sec"]) == models
    assert set(figures["ratios"]) == {"augment_over_decode", "pipeline_over_augment_x_cpus",
                                      "augment_over_baseline", "augment_all_cores_over_augment_x_cpus",
                                      "pipeline_over_augment_all_cores", "train_iter_over_pipeline",
                                      "train_iter_local_shuffle_over_pipeline",
                                      "train_iter_over_train_iter_local_shuffle", "pipeline_over_compare_data"}
    assert figures["compare_data"] == str(tiny_data) and figures["compare_data_pipeline_img_per_sec"] > 0
    assert f"the same pipeline on {tiny_data}; --data's is " in done.stdout
    assert figures["decode_batched_device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert "--decode gpu's batched decode and crop" in done.stdout
    assert all(v > 0 for v in (figures["decode_per_core"], figures["decode_batched_img_per_sec"],
                               figures["augment_per_core"],
                               figures["pipeline_img_per_sec"], figures["baseline_per_worker"],
                               figures["augment_all_cores"], figures["pipeline_train_iter_img_per_sec"],
                               figures["pipeline_train_iter_local_shuffle_img_per_sec"]))
    assert figures["train_batch"] == 16 and "the training loop's iterator (batch 16 on " in done.stdout
    assert "augment_per_core" in done.stdout and "x decode" in done.stdout
    on_gpu = torch.cuda.is_available()  # the bench's own choice of device
    assert figures["device"] == (torch.cuda.get_device_name() if on_gpu else "cpu")
    compiled = figures["model_step_compiled_img_per_sec"]
    if on_gpu:  # --compile auto compiles on a GPU...
        assert set(compiled) == models and all(v > 0 for v in compiled.values())
    else:  # ...and not on a CPU, where compiling takes minutes
        assert compiled is None
    assert figures["bf16_peak_tflops"] == 2.5  # the peak given, on either device
    for suffix, rates in (("", figures["model_step_img_per_sec"]), ("_compiled", compiled or {})):
        for model, rate in rates.items():
            flops_per_sec = rate * figures["model_train_gflop_per_image"][model] * 1e9
            assert figures["model_step_peak_frac"][model + suffix] == pytest.approx(flops_per_sec / 2.5e12)
    assert len(figures["model_step_peak_frac"]) == len(models) * (2 if on_gpu else 1)
    assert "of 2.5 TFLOP/s bf16" in done.stdout
    # 100 images are a few blocks: the rate is flagged as not steady
    assert 1 <= figures["pipeline_blocks"] < 20
    assert "not a steady-state figure; raise --pipeline-images" in done.stdout


def test_compiled_training_step_trains() -> None:
    """torch.compile's path through the step (compiled forward and backward, eager SGD),
    on the CPU, which every host has."""
    from torch import nn

    from alexnet.bench import training_step_rate

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 11, stride=16), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 2))
    before = net[0].weight.detach().clone()
    rate = training_step_rate(net, torch.device("cpu"), batch=2, steps=1, amp=False, channels_last=False,
                              num_classes=2, compiled=True)
    assert rate > 0
    assert not torch.equal(net[0].weight, before)  # the compiled module's steps updated the model's own weights
