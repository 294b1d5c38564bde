"""Failures the driver must catch before any training starts, with real causes."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from alexnet.config import TrainConfig
from alexnet.errors import UserError
from alexnet.trainer import check_writable, plan_placement

ROOT = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_unreachable_tracking_server_fails_fast_and_clearly(tiny_data: Path) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    out = subprocess.run([sys.executable, "jobs/train.py", "--data", str(tiny_data)], cwd=ROOT,
                         env={**os.environ, "MLFLOW_TRACKING_URI": uri},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: MLFLOW_TRACKING_URI={uri} does not answer")
    assert "Started a local Ray" not in out.stderr  # refused before Ray started


def test_unwritable_storage_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match=r"--storage .*cannot be written"):
        check_writable(str(blocker / "runs"))
    check_writable(str(tmp_path / "runs"))  # a fresh directory is fine


@pytest.mark.parametrize("flags, cluster, message", [
    ({"workers": 4, "cpus_per_worker": 1.0}, {"CPU": 2.0}, "needs more than the cluster's 2 CPUs"),
    ({"workers": 2, "device": "cuda"}, {"CPU": 16.0, "GPU": 1.0}, "needs 2 GPUs but the cluster has 1"),
    ({"workers": 1, "device": "cuda"}, {"CPU": 2.0}, "needs 1 GPUs but the cluster has 0"),
])
def test_workers_the_cluster_can_never_place(flags: dict, cluster: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        plan_placement(TrainConfig(**flags), cluster)


def test_small_cpu_machine_leaves_cpus_for_the_input_pipeline() -> None:
    plan = plan_placement(TrainConfig(workers=2), {"CPU": 2.0})
    assert not plan.use_gpu and plan.cpus_per_worker == 0.5
    assert plan.data.augment_actors >= 1 and plan.data.read_cpus < 1
    gpu = plan_placement(TrainConfig(workers=1), {"CPU": 16.0, "GPU": 1.0})
    assert gpu.use_gpu and gpu.cpus_per_worker == 1.0 and gpu.data.augment_actors > 1
