"""A real two-trial Ray Tune sweep over the real training job, checked in MLflow."""

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from alexnet import tracking
from alexnet.config import SweepConfig, TrainConfig
from alexnet.errors import UserError
from alexnet.sweep import PARENT_TAG, sweep


def test_sweep_logs_parent_and_children_survives_a_crash_and_resumes(
        ray_session, tiny_data: Path, tmp_path: Path) -> None:
    # lr 1e4 really diverges (the loss turns NaN by step 3), so that trial really crashes.
    cfg = SweepConfig(data=str(tiny_data), epochs=1, lr_grid=(0.01, 1e4), weight_decay_grid=(5e-4,),
                      num_samples=1, name=f"sweep-{tmp_path.name}", experiment="test-sweep",
                      storage=str(tmp_path / "runs"))
    train = TrainConfig(data=str(tiny_data), batch_size=8, bias_init="caffe", max_failures=0, log_every=1)
    outcome = sweep(cfg, train)

    client = MlflowClient(tracking.tracking_uri())
    parent = client.get_run(outcome.parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'")
    by_lr = {float(c.data.params["lr"]): c for c in children}
    assert sorted(by_lr) == [0.01, 1e4]
    good, crashed = by_lr[0.01], by_lr[1e4]
    assert good.info.status == "FINISHED" and crashed.info.status == "FAILED"
    assert "lower --lr" in crashed.data.tags["alexnet.error"]
    for child in children:
        assert child.data.params["weight_decay"] == "0.0005" and "seed" in child.data.params
    for key in ("val_top1_err", "val_top5_err"):
        assert [m.step for m in client.get_metric_history(good.info.run_id, key)] == [0]

    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_val_top1_err"] == pytest.approx(good.data.metrics["val_top1_err"])
    assert parent.data.metrics["best_val_top5_err"] == pytest.approx(good.data.metrics["val_top5_err"])
    assert parent.data.params["best_lr"] == "0.01" and parent.data.params["best_weight_decay"] == "0.0005"
    assert parent.data.params["best_seed"] == good.data.params["seed"]
    assert parent.data.params["best_run_id"] == good.info.run_id
    assert (Path(parent.data.params["best_checkpoint"]) / "checkpoint.pt").is_file()
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"trials.csv", "sweep_curves.png"}
    assert [t.status for t in sorted(outcome.trials, key=lambda t: t.lr)] == ["FINISHED", "FAILED"]
    assert outcome.best is not None and outcome.best.lr == 0.01

    # The same name again: the sweep is restored, nothing is retrained or duplicated.
    again = sweep(cfg, train)
    assert again.parent_run_id == outcome.parent_run_id
    assert again.best is not None and again.best.run_id == good.info.run_id
    assert sorted(t.lr for t in again.trials) == [0.01, 1e4]
    assert len(client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'")) == 2


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
    tracking.start_or_resume_run(client, exp_id, "sw", {f"train.{k}": v for k, v in asdict(base).items()})
    check_sweep_resume(client, exp_id, "sw", replace(base, lr=0.5, seed=7, epochs=3))  # drawn per trial, or allowed
    with pytest.raises(UserError, match=r"resumes sweep run .* other training settings: batch_size 8 -> 16"):
        check_sweep_resume(client, exp_id, "sw", replace(base, batch_size=16))
