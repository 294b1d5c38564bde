"""A real Ray Tune sweep over the real training job (ASHA, a crash, Ctrl-C and resuming), checked in MLflow."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient

from alexnet import tracking
from alexnet.config import SweepConfig, TrainConfig, train_config_for
from alexnet.errors import UserError
from alexnet.sweep import PARENT_TAG, sweep

ROOT = Path(__file__).resolve().parents[1]


def interrupt_after_an_epoch(proc: subprocess.Popen, experiment: str) -> None:
    """Ctrl-C, as a user would press it, once a trial of `experiment` has logged an epoch
    (so the sweep is mid-trial, with a checkpoint to resume from)."""
    client = MlflowClient(tracking.tracking_uri())
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        exp = client.get_experiment_by_name(experiment)
        if exp and client.search_runs([exp.experiment_id], filter_string="metrics.val_loss >= 0"):
            proc.send_signal(signal.SIGINT)
            return
        time.sleep(0.3)
    raise AssertionError(f"no trial logged an epoch (exit code {proc.poll()})")


def test_a_sweep_stops_weak_trials_survives_a_crash_and_ctrl_c_and_resumes(
        ray_session, tiny_data: Path, tmp_path: Path) -> None:
    """Three trials of LeNet-5 (the sweep's machinery is what is tested, and its trials
    cost seconds, not AlexNet's minutes), one at a time. lr 1e-4 leaves the network near
    its start (val loss about ln 3 = 1.10); lr 1 saturates it, confidently wrong (val loss
    above 200 after one epoch on every seed tried), so ASHA on val_loss must stop it (top-1
    error could tie here: both may predict one class); lr 1e30 really diverges (weight
    decay alone multiplies the weights by -5e26 a step: inf by the second, so the loss is
    NaN by step 3), so that trial really crashes. Ctrl-C on `jobs/tune.py` during the first
    trial's second epoch leaves the sweep unfinished; the rerun goes on from that trial's
    checkpoint, not from its start. The interrupted sweep is its own driver, as a user's
    is: the Ray Train placement group of a trial killed mid-run is only freed with its
    driver (or by Ray Train's cleaner, through the dashboard's state API)."""
    experiment = f"test-sweep-{tmp_path.name}"
    storage = tmp_path / "runs"
    train_args = "--arch lenet5 --batch-size 8 --max-failures 0 --log-every 1"
    command = [sys.executable, "jobs/tune.py", "--data", str(tiny_data), "--epochs", "3",
               "--lr-grid", "0.0001,1,1e30", "--weight-decay-grid", "0.0005", "--num-samples", "1",
               "--metric", "val_loss", "--name", "sweep", "--experiment", experiment, "--storage", str(storage),
               "--train-args", train_args]
    # The driver joins the session's Ray, as a job joins a running cluster: when it exits
    # (Ctrl-C), Ray frees its job's actors and placement groups with it.
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        interrupt_after_an_epoch(first, experiment)
        first.wait(timeout=300)
    printed = (tmp_path / "first.log").read_text()
    assert first.returncode == 130, printed[-3000:]
    # one trial at a time: Tune had drawn only the first from the grid
    assert "1 trial(s) unfinished" in printed and "rerun the same command (--name sweep)" in printed
    cfg = SweepConfig(data=str(tiny_data), epochs=3, lr_grid=(1e-4, 1.0, 1e30), weight_decay_grid=(5e-4,),
                      num_samples=1, metric="val_loss", name="sweep", experiment=experiment, storage=str(storage))
    train = train_config_for(str(tiny_data), "", train_args)
    client = MlflowClient(tracking.tracking_uri())
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    (parent,) = client.search_runs([exp_id], filter_string="tags.`alexnet.sweep_kind` = 'search'")
    assert parent.info.status == "KILLED"
    (slow,) = client.search_runs([exp_id], filter_string="params.lr = '0.0001'")
    done_before = len(client.get_metric_history(slow.info.run_id, "val_loss"))
    assert 1 <= done_before < 3

    outcome = sweep(cfg, train)
    assert not outcome.interrupted and outcome.parent_run_id == parent.info.run_id
    by_lr = {t.lr: t for t in outcome.trials}
    assert [by_lr[lr].status for lr in (1e-4, 1.0, 1e30)] == ["FINISHED", "STOPPED", "FAILED"]
    assert by_lr[1e-4].epochs == 3 and 1 <= by_lr[1.0].epochs < 3
    assert by_lr[1.0].val_loss > by_lr[1e-4].val_loss
    # The unfinished trial went on where its checkpoint was: one resumption, and no
    # epoch trained twice (an epoch's metrics are logged once, at its own step).
    (resumed,) = client.get_metric_history(slow.info.run_id, "resumed_at_epoch")
    assert resumed.value == resumed.step and done_before <= resumed.step <= done_before + 1  # +1: saved, not logged
    assert [m.step for m in client.get_metric_history(slow.info.run_id, "val_loss")] == [0, 1, 2]

    children = client.search_runs([exp_id], filter_string=f"tags.`{PARENT_TAG}` = '{outcome.parent_run_id}'")
    runs = {float(c.data.params["lr"]): c for c in children}
    assert sorted(runs) == [1e-4, 1.0, 1e30]
    good, stopped, crashed = runs[1e-4], runs[1.0], runs[1e30]
    assert good.info.status == "FINISHED" and good.info.run_id == by_lr[1e-4].run_id
    assert stopped.info.status == "KILLED"
    assert stopped.data.tags["alexnet.stopped_early"] == f"ASHA stopped it after epoch {by_lr[1.0].epochs}"
    assert crashed.info.status == "FAILED" and "lower --lr" in crashed.data.tags["alexnet.error"]
    for child in children:
        assert child.data.params["weight_decay"] == "0.0005" and "seed" in child.data.params

    parent = client.get_run(outcome.parent_run_id)
    assert parent.info.status == "FINISHED"
    for key in ("val_top1_err", "val_top5_err", "val_loss"):
        assert parent.data.metrics[f"best_{key}"] == pytest.approx(good.data.metrics[key])
    assert parent.data.params["best_lr"] == "0.0001" and parent.data.params["best_weight_decay"] == "0.0005"
    assert parent.data.params["best_seed"] == good.data.params["seed"]
    assert parent.data.params["best_run_id"] == good.info.run_id
    assert (Path(parent.data.params["best_checkpoint"]) / "checkpoint.pt").is_file()
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"trials.csv", "sweep_curves.png"}

    # The same name again: the sweep is restored, nothing is retrained or duplicated.
    again = sweep(cfg, train)
    assert again.parent_run_id == outcome.parent_run_id
    assert again.best is not None and again.best.run_id == good.info.run_id
    assert sorted(t.lr for t in again.trials) == [1e-4, 1.0, 1e30]
    assert len(client.search_runs([exp_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'")) == 3
    assert len(client.get_metric_history(good.info.run_id, "val_loss")) == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"seeds": "0..2", "lr_grid": (0.01,)}, "--seeds trains one fixed config"),
    ({"seeds": "0..x"}, "expected a range like 0..6"),
    ({"seeds": "1,1"}, "repeats a seed"),
    ({"lr_range": (0.1, 0.01)}, "0 < MIN < MAX"),
    ({"lr_grid": (0.01, -1.0)}, "learning rates must be positive"),
    ({"num_samples": 0}, "--num-samples must be at least 1"),
])
def test_invalid_sweeps_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        SweepConfig(**kwargs)


def test_seed_ranges_are_inclusive() -> None:
    assert SweepConfig(seeds="0..6").seed_list == (0, 1, 2, 3, 4, 5, 6)
    assert SweepConfig(seeds="3,5").seed_list == (3, 5)


def test_a_sweep_whose_state_others_may_write_is_not_restored(tmp_path: Path) -> None:
    """Ray Tune restores a sweep by unpickling its files: only the user's own are trusted."""
    from alexnet.sweep import check_trusted

    folder = tmp_path / "sweep-x"
    folder.mkdir(mode=0o755)
    state = folder / "tuner.pkl"
    state.write_bytes(b"state")
    state.chmod(0o644)
    check_trusted(str(folder))
    state.chmod(0o666)
    with pytest.raises(UserError, match=r"tuner.pkl is owned by uid .* or writable by others \(mode 666\)"):
        check_trusted(str(folder))
    check_trusted(f"s3://bucket/{folder.name}")  # an object store is trusted as configured


def test_a_sweep_resumed_with_other_training_settings_is_refused_before_its_trials(tmp_path: Path) -> None:
    from dataclasses import asdict, replace

    from alexnet.sweep import check_sweep_resume

    client = tracking.client()
    exp_id = tracking.experiment_id(client, "test-sweep-resume")
    base = TrainConfig(data=str(tmp_path), batch_size=8, epochs=2)
    tracking.start_or_resume_run(client, exp_id, "sw", {"metric": "val_top1_err",
                                                        **{f"train.{k}": v for k, v in asdict(base).items()}})
    sweep_cfg = SweepConfig()
    # drawn per trial, or allowed to change
    check_sweep_resume(client, exp_id, "sw", sweep_cfg, replace(base, lr=0.5, seed=7, epochs=3))
    with pytest.raises(UserError, match=r"resumes sweep run .* other training settings: batch_size 8 -> 16"):
        check_sweep_resume(client, exp_id, "sw", sweep_cfg, replace(base, batch_size=16))
    with pytest.raises(UserError, match=r"other training settings: --metric val_top1_err -> val_loss"):
        check_sweep_resume(client, exp_id, "sw", SweepConfig(metric="val_loss"), base)
