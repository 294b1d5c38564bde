"""Bad configuration fails in one line, with a non-zero exit, before any work starts."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("job", ["jobs/train.py", "jobs/prepare_data.py"])
def test_help_lists_every_flag(job: str) -> None:
    out = run_job(job, "--help")
    assert out.returncode == 0
    assert "--data" in out.stdout or "--src" in out.stdout


@pytest.mark.parametrize("flags, message", [
    (["--lr", "-0.1"], "--lr must be positive"),
    (["--lr", "0"], "--lr must be positive"),
    (["--batch-size", "10", "--workers", "3"], "--batch-size 10 must be divisible by --workers 3"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
    (["--epochs", "0"], "--epochs must be at least 1"),
])
def test_invalid_training_flags(flags: list[str], message: str) -> None:
    out = run_job("jobs/train.py", *flags)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr and "Started a local Ray" not in out.stderr


def test_unprepared_data_is_one_line(tmp_path: Path) -> None:
    out = run_job("jobs/train.py", "--data", str(tmp_path))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith(f"error: --data {tmp_path}: no manifest.json")
    assert "Traceback" not in out.stderr
