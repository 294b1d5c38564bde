"""Real failures: a training worker killed with SIGKILL mid-run and a disk that fills up
(the driver killed with the local Ray it started, then rerun, is in
tests/test_object_store.py, with its data and checkpoints in a bucket). The network is LeNet-5: the
failures and the recovery are what is tested, and its epochs and checkpoints cost little
(AlexNet's are 460 MB). The killed worker's run is also the suite's end-to-end check of
two DDP workers fed by Ray Data and recorded in MLflow: a Ray Train run costs ~30 s of
start-up on 2 cores, so one run serves both."""

import os
import signal
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import mlflow.pytorch
import pytest
import ray
import torch
from mlflow.tracking import MlflowClient
from ray_train_runs import checkpoint_registered

from alexnet import checkpoint as ckpt
from alexnet import tracking
from alexnet.config import TrainConfig
from alexnet.errors import UserError
from alexnet.recipe import build_model, build_optimizer_for, schedule_for
from alexnet.trainer import TrainOutcome, fit
from alexnet.worker import checkpoint_state

ROOT = Path(__file__).resolve().parents[1]


def train_worker_pids() -> list[int]:
    """The live Ray Train workers of this session's Ray (another test process may run its own)."""
    from ray.util.state import list_actors

    actors = list_actors(address=ray.get_runtime_context().gcs_address,
                         filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
    return [a.pid for a in actors]


def test_two_workers_train_through_a_killed_worker_and_record_each_epoch_once(ray_session, tiny_data: Path,
                                                                             tmp_path: Path) -> None:
    """Prepared shards -> Ray Data actors -> two DDP workers -> MLflow, with one worker
    killed in the second epoch: it is replaced, the run goes on from the last epoch
    checkpoint and its record is whole: params, every metric once per epoch, artifacts,
    the MLflow model."""
    cfg = TrainConfig(data=str(tiny_data), arch="lenet5", epochs=2, workers=2, batch_size=8, lr=0.01,
                      storage=str(tmp_path / "runs"), experiment="test-fault", name="killed-worker",
                      max_failures=2, log_every=1)
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
        # After epoch 1 is logged the workers are inside epoch 2, the last: kill one of them there.
        if (runs and client.get_metric_history(runs[0].info.run_id, "val_top1_err")
                and checkpoint_registered(Path(cfg.storage), cfg.name)):
            pids = train_worker_pids()
            if pids:
                killed = pids[-1]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    thread.join(timeout=900)
    assert killed is not None, "the run ended before a worker could be killed"
    outcome = result["outcome"]
    assert isinstance(outcome, TrainOutcome), outcome
    assert killed not in train_worker_pids()
    # the new worker group went on from the epoch-1 checkpoint, not from the start
    assert [(m.step, m.value) for m in client.get_metric_history(outcome.run_id, "resumed_at_epoch")] == [(1, 1.0)]
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1
    assert run.data.params["lr"] == "0.01" and run.data.params["batch_size"] == "8"
    assert run.data.params["workers"] == "2" and run.data.params["seed"] == "0"
    for key in ("train_loss", "val_top1_err", "val_top5_err", "val_loss", "lr", "images_per_sec",
                "input_stall_frac", "bad_images", "val_images"):
        assert [m.step for m in client.get_metric_history(outcome.run_id, key)] == [0, 1], key
    top1 = run.data.metrics["val_top1_err"]
    assert 0.0 <= top1 <= 100.0 and run.data.metrics["val_images"] == 15  # every image once, over both ranks
    assert top1 * 15 / 100 == pytest.approx(round(top1 * 15 / 100), abs=1e-6)  # whole images
    assert client.get_metric_history(outcome.run_id, "train_loss")[-1].value > 0
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {"classes.json", "checkpoint", "training_curves.png", "conv1_kernels.png"} <= artifacts
    assert [a.path for a in client.list_artifacts(outcome.run_id, "checkpoint")] == ["checkpoint/checkpoint.pt"]
    model = mlflow.pytorch.load_model(f"runs:/{outcome.run_id}/model")  # the MLflow PyTorch model
    assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 3)


def checkpoint_bytes(cfg: TrainConfig, num_classes: int, path: Path) -> int:
    """The size of the checkpoint a run of `cfg` writes each epoch: the worker's own state
    (weights, optimiser after a step, schedule, config), saved as the worker saves it."""
    torch.manual_seed(0)
    model = build_model(cfg, num_classes)
    optimizer = build_optimizer_for(model, cfg)
    model(torch.zeros(2, 3, 224, 224)).sum().backward()
    optimizer.step()
    ckpt.save(path, checkpoint_state(model, optimizer, schedule_for(cfg), 0, [], cfg, num_classes, [0.0] * 3))
    return path.stat().st_size


DISK_CFG = TrainConfig(data="", arch="lenet5", epochs=3, workers=1, batch_size=8, experiment="test-disk",
                       name="full-disk", max_failures=0)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real filesystem with room for one of the run's checkpoints (half as much again,
    for Ray's small files and the lock), not for two."""
    mount = tmp_path / "disk"
    mount.mkdir()
    size_kib = int(1.5 * checkpoint_bytes(DISK_CFG, 3, tmp_path / "probe.pt")) // 1024
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mount)],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root in a privileged container: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_clearly_and_the_last_checkpoint_resumes(ray_session, tiny_data: Path,
                                                                   small_disk: Path) -> None:
    cfg = replace(DISK_CFG, data=str(tiny_data), storage=str(small_disk))
    with pytest.raises(UserError, match="the disk filled up while writing a checkpoint.*rerun with --name full-disk"):
        fit(cfg)
    client = MlflowClient(tracking.tracking_uri())
    run_id = tracking.find_run(client, client.get_experiment_by_name("test-disk").experiment_id, "full-disk")
    assert client.get_run(run_id).info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(run_id, "val_top1_err")] == [0]

    # More room, the same command: the epoch-1 checkpoint was intact and the run goes on from it.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    outcome = fit(cfg)
    assert outcome.run_id == run_id and client.get_run(run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "val_top1_err")] == [0, 1, 2]
