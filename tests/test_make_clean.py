"""`make clean` removes only what the Makefile rebuilds; checkpoints and MLflow runs go
only through `make clean-runs CONFIRM=yes`. The project's Makefile, run in a scratch
directory laid out like the project."""

import subprocess
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"
REBUILT = ["data/digits/manifest.json", "data/photos/manifest.json", "bench.json", "bench-photos.json"]
WORK = ["runs/paper-1/checkpoint.pt", "mlruns/1/model.pt2", "mlruns.db", "data/imagenet-shards/manifest.json"]


def make(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-f", str(MAKEFILE), "-C", str(directory), *args], capture_output=True,
                          text=True, timeout=60)


def lay_out(root: Path) -> None:
    for path in REBUILT + WORK:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("x")


def test_clean_keeps_runs_and_the_mlflow_store(tmp_path: Path) -> None:
    planned = make(tmp_path, "-n", "clean").stdout.split()
    assert not {"runs", "mlruns", "mlruns.db", "data"} & set(planned), planned
    lay_out(tmp_path)
    assert make(tmp_path, "clean").returncode == 0
    assert not any((tmp_path / p).exists() for p in REBUILT)
    assert all((tmp_path / p).exists() for p in WORK)


def test_clean_runs_says_what_it_deletes_and_needs_confirm(tmp_path: Path) -> None:
    lay_out(tmp_path)
    refused = make(tmp_path, "clean-runs")
    assert refused.returncode != 0 and "make clean-runs CONFIRM=yes" in refused.stdout
    assert "every MLflow run" in refused.stdout and all((tmp_path / p).exists() for p in WORK)
    assert make(tmp_path, "clean-runs", "CONFIRM=yes").returncode == 0
    assert not any((tmp_path / p).exists() for p in ["runs", "mlruns", "mlruns.db"])
    assert (tmp_path / "data/imagenet-shards/manifest.json").exists()
