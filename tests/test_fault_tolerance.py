"""Real failures: a training worker killed with SIGKILL mid-run."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from alexnet import tracking
from alexnet.config import TrainConfig
from alexnet.trainer import TrainOutcome, fit


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
