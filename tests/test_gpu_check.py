"""The GPU check's whole code path, on the CPU (its cpu-smoke preset), in a process that
cannot import Ray, MLflow or simplejpeg, as on a GPU machine given nothing but the
project: nothing in it runs for the first time on a GPU."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from job_loader import load_job

from alexnet import gpucheck
from alexnet.data import images

ROOT = Path(__file__).resolve().parents[1]

# Any import of these raises, as on a machine where they are not installed.
BLOCK = """
import runpy, sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is blocked in this test")
sys.meta_path.insert(0, Blocked())
sys.argv = {argv!r}
{body}
"""


def run_blocked(body: str, argv: list[str], blocked: set[str], timeout: int = 300) -> subprocess.CompletedProcess:
    code = BLOCK.format(blocked=sorted(blocked), argv=argv, body=body)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_the_cpu_smoke_check_runs_every_section_without_ray_mlflow_or_simplejpeg(tmp_path: Path) -> None:
    out_json, out_md = tmp_path / "check.json", tmp_path / "check.md"
    argv = ["jobs/gpu_check.py", "--preset", "cpu-smoke", "--data", str(tmp_path / "photos"),
            "--json", str(out_json), "--markdown", str(out_md)]
    done = run_blocked("runpy.run_path('jobs/gpu_check.py', run_name='__main__')", argv,
                       {"ray", "mlflow", "simplejpeg"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = json.loads(out_json.read_text())
    md = out_md.read_text()
    assert r["environment"]["device"] == "cpu" and r["environment"]["jpeg_codec"] == "pillow"
    assert r["data"]["made"] and r["data"]["train_images"] == 36
    assert set(r["train_step"]["modes"]) == set(r["end_to_end"]["modes"]) == {"eager", "default"}
    for mode in ("eager", "default"):
        step, e2e = r["train_step"]["modes"][mode], r["end_to_end"]["modes"][mode]
        assert step["img_per_sec"] > 0 and step["images"] == 4  # --steps 1 of --batch 4
        assert e2e["img_per_sec"] > 0 and 0 <= e2e["input_stall_frac"] <= 1 and e2e["images"] == 4
    assert r["cpu_augment"]["augment_all_cores"] > 0 and r["cpu_augment"]["cores"] == 2
    assert r["end_to_end"]["loader_alone"]["images"] == 4
    g = r["gpu_decode"]
    assert g["measured"] and g["device"] == "cpu" and g["decode_img_per_sec"] > 0  # --decode gpu's path, on the CPU
    assert g["end_to_end"]["images"] == 4 and 0 <= g["end_to_end"]["input_stall_frac"] <= 1
    c = r["correctness"]
    assert c["agree"] and len(c["cpu_losses"]) == len(c["device_losses"]) == 2
    assert r["ten_crop_eval"]["ok"] and r["ten_crop_eval"]["images"] == r["data"]["val_images"] == 4
    # both outputs are printed, and the Markdown says what is not measured
    assert md in done.stdout and '"train_step"' in done.stdout
    assert "| training step alone | img/s |" in md and "agree within" in md
    assert "Decoding on the device (`--decode gpu`): batched decode and crop alone" in md
    assert gpucheck.problems(r) == []
    # a section that fails on the GPU machine is reported in its place, and fails the job
    r["train_step"]["modes"]["default"] = r["end_to_end"]["modes"]["default"] = {"failed": "BackendCompilerFailed: x"}
    r["correctness"] = {"failed": "RuntimeError: y"}
    assert gpucheck.problems(r) == ["train_step.modes.default: BackendCompilerFailed: x",
                                    "end_to_end.modes.default: BackendCompilerFailed: x",
                                    "correctness: RuntimeError: y"]
    md = gpucheck.markdown(r)
    assert "| default | BackendCompilerFailed: x | | |" in md and "Correctness: RuntimeError: y." in md


def test_pillows_codec_gives_simplejpegs_pixels() -> None:
    """What a GPU machine given no simplejpeg wheel decodes with (the smoke check above
    runs on it): the same pixels to within a JPEG decoder's rounding."""
    y, x = np.mgrid[0:256, 0:256]
    rgb = np.stack([y, x, (x + y) // 2], -1).astype(np.uint8)
    for data in (images.pillow_encode_jpeg(rgb, 95), images.encode_jpeg(rgb, 95)):
        fast, plain = images.decode_jpeg(data, images.decode_buffer()), images.pillow_decode_jpeg(data)
        assert plain.shape == fast.shape == (256, 256, 3)
        assert np.abs(plain.astype(int) - fast).mean() < 2 and np.abs(plain.astype(int) - rgb).mean() < 2


@pytest.mark.parametrize("flags, message", [
    (["--compile-modes", "default,fast"], "--compile-modes: 'fast' is not one of"),
    (["--steps", "0"], "--steps must be positive"),
    (["--loader-workers", "-1"], "must be 0 or more"),
])
def test_bad_flags_are_refused_before_any_work(flags: list[str], message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        load_job("gpu_check").main(["--data", str(tmp_path / "never-made"), *flags])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "never-made").exists()
