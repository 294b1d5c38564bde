"""Real failures: a training worker killed with SIGKILL mid-run, and a driver killed with
the local Ray it started, then rerun."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from alexnet import tracking
from alexnet.config import TrainConfig
from alexnet.errors import UserError
from alexnet.trainer import TrainOutcome, fit

ROOT = Path(__file__).resolve().parents[1]


def train_worker_pids() -> list[int]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in ps.splitlines() if "ray::RayTrainWorker" in line]


def test_killed_worker_is_replaced_and_the_run_finishes_once(ray_session, tiny_data: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(data=str(tiny_data), epochs=4, workers=2, batch_size=8, bias_init="caffe",
                      storage=str(tmp_path / "runs"), experiment="test-fault", name="killed-worker",
                      max_failures=2)
    result: dict[str, TrainOutcome | BaseException] = {}

    def train() -> None:
        try:
            result["outcome"] = fit(cfg)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            result["outcome"] = e

    thread = threading.Thread(target=train)
    thread.start()
    client = MlflowClient(tracking.tracking_uri())
    killed = None
    deadline = time.time() + 600
    while killed is None and time.time() < deadline and thread.is_alive():
        exp = client.get_experiment_by_name("test-fault")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        # After epoch 1 is logged the workers are inside epoch 2: kill one of them there.
        if runs and client.get_metric_history(runs[0].info.run_id, "val_top1_err"):
            pids = train_worker_pids()
            if pids:
                killed = pids[-1]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    thread.join(timeout=900)
    assert killed is not None, "the run ended before a worker could be killed"
    outcome = result["outcome"]
    assert isinstance(outcome, TrainOutcome), outcome
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1
    steps = [m.step for m in client.get_metric_history(outcome.run_id, "val_top1_err")]
    assert steps == [0, 1, 2, 3]
    assert killed not in train_worker_pids()


def wait_for_epoch(client: MlflowClient, experiment: str, proc: subprocess.Popen, timeout_s: float = 600) -> str:
    """The run id, once the run has logged its first epoch (so its checkpoint is saved)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if runs and client.get_metric_history(runs[0].info.run_id, "val_top1_err"):
            return runs[0].info.run_id
        time.sleep(0.5)
    raise AssertionError(f"no epoch was logged (exit code {proc.poll()})")


def test_rerunning_a_killed_driver_resumes_its_run(tiny_data: Path, tmp_path: Path) -> None:
    command = [sys.executable, "jobs/train.py", "--data", str(tiny_data), "--epochs", "3", "--batch-size", "8",
               "--bias-init", "caffe", "--storage", str(tmp_path / "runs"), "--experiment", "test-driver",
               "--name", "killed-driver", "--log-every", "1"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # each driver starts its own Ray
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        client = MlflowClient(tracking.tracking_uri())
        run_id = wait_for_epoch(client, "test-driver", first)
        os.killpg(first.pid, signal.SIGKILL)  # the driver and the local Ray it started: all gone at once
        first.wait(timeout=60)
    assert client.get_run(run_id).info.status == "RUNNING"  # nobody was left to close it

    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"MLflow run {run_id} (resumed)" in second.stdout
    exp = client.get_experiment_by_name("test-driver")
    assert [r.info.run_id for r in client.search_runs([exp.experiment_id])] == [run_id]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "val_top1_err")] == [0, 1, 2]


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 600 MB filesystem: room for one checkpoint of the 3-class AlexNet (about
    460 MB with its SGD momentum), not for two."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root in a privileged container: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_clearly_and_the_last_checkpoint_resumes(ray_session, tiny_data: Path,
                                                                   small_disk: Path) -> None:
    cfg = TrainConfig(data=str(tiny_data), epochs=3, workers=1, batch_size=8, bias_init="caffe",
                      storage=str(small_disk), experiment="test-disk", name="full-disk", max_failures=0)
    with pytest.raises(UserError, match="the disk filled up while writing a checkpoint.*rerun with --name full-disk"):
        fit(cfg)
    client = MlflowClient(tracking.tracking_uri())
    run_id = tracking.find_run(client, client.get_experiment_by_name("test-disk").experiment_id, "full-disk")
    assert client.get_run(run_id).info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(run_id, "val_top1_err")] == [0]

    # More room, the same command: the epoch-1 checkpoint was intact and the run goes on from it.
    subprocess.run(["mount", "-o", "remount,size=2g", str(small_disk)], check=True)
    outcome = fit(cfg)
    assert outcome.run_id == run_id and client.get_run(run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "val_top1_err")] == [0, 1, 2]
