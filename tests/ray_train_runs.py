"""Watching a Ray Train run from outside, for the tests that kill part of one: when an
epoch is logged and its checkpoint is registered, so that what is killed is known."""

from __future__ import annotations

import subprocess
import time

from mlflow.tracking import MlflowClient

from alexnet.store import Location


def checkpoint_registered(storage: Location, name: str) -> bool:
    """Whether Ray Train's controller has taken in a checkpoint of run `name`: it writes
    its snapshot of kept checkpoints then. A worker or driver killed between the report
    and the controller's next poll takes that epoch's checkpoint with it."""
    return (storage / name / "checkpoint_manager_snapshot.json").exists()


def wait_for_epoch(client: MlflowClient, experiment: str, proc: subprocess.Popen, storage: Location, name: str,
                   timeout_s: float = 600) -> str:
    """The run id, once the run has logged its first epoch and its checkpoint is registered."""
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if (runs and client.get_metric_history(runs[0].info.run_id, "val_top1_err")
                and checkpoint_registered(storage, name)):
            return runs[0].info.run_id
        time.sleep(0.5)
    raise AssertionError(f"no epoch was logged (exit code {proc.poll()})")
