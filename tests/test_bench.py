"""The benchmark runs on a tiny dataset and writes every figure; nothing here is timed."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"decode_per_core", "augment_per_core", "pipeline_img_per_sec", "pipeline_cpus",
        "pipeline_first_batch_s", "pipeline_cold_img_per_sec", "baseline_per_worker", "model_step_img_per_sec",
        "pipeline_iter_torch_batches_img_per_sec", "augment_all_cores", "device", "ratios"}


def test_bench_writes_every_key(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "jobs/bench.py", "--data", str(tiny_data), "--json", str(out), "--seconds", "0.2",
         "--pipeline-images", "100", "--pipeline-warmup", "100", "--pipeline-cpus", "1",
         "--model-batch", "2", "--model-steps", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert KEYS <= set(figures)
    assert set(figures["model_step_img_per_sec"]) == {"grouped", "ungrouped", "torchvision"}
    assert set(figures["ratios"]) == {"augment_over_decode", "pipeline_over_augment_x_cpus",
                                      "augment_over_baseline", "augment_all_cores_over_augment_x_cpus",
                                      "pipeline_over_augment_all_cores"}
    assert all(v > 0 for v in (figures["decode_per_core"], figures["augment_per_core"],
                               figures["pipeline_img_per_sec"], figures["baseline_per_worker"],
                               figures["augment_all_cores"]))
    assert "augment_per_core" in done.stdout and "x decode" in done.stdout
