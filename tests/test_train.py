"""End to end: prepared shards -> Ray Data actors -> two DDP workers -> MLflow."""

from dataclasses import replace
from pathlib import Path

import mlflow.pytorch
import pytest
import torch
from mlflow.tracking import MlflowClient

from alexnet import checkpoint as ckpt
from alexnet import tracking
from alexnet.config import TrainConfig
from alexnet.trainer import fit


@pytest.fixture
def config(tiny_data: Path, tmp_path: Path) -> TrainConfig:
    return TrainConfig(data=str(tiny_data), epochs=1, workers=2, batch_size=8, lr=0.01,
                       bias_init="caffe", storage=str(tmp_path / "runs"), experiment="test-train",
                       name=f"e2e-{tmp_path.name}", log_every=1)


def test_two_workers_train_and_log_to_mlflow_then_resume(ray_session, config: TrainConfig) -> None:
    outcome = fit(config)
    client = MlflowClient(tracking.tracking_uri())
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.01" and run.data.params["batch_size"] == "8"
    assert run.data.params["workers"] == "2" and run.data.params["seed"] == "0"
    for key in ("train_loss", "val_top1_err", "val_top5_err", "lr", "images_per_sec",
                "input_stall_frac", "bad_images"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0], key
    top1 = run.data.metrics["val_top1_err"]
    assert 0.0 <= top1 <= 100.0 and run.data.metrics["val_images"] == 15  # every image once
    assert top1 * 15 / 100 == pytest.approx(round(top1 * 15 / 100), abs=1e-6)  # whole images
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"classes.json", "checkpoint", "training_curves.png"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == ["checkpoint/checkpoint.pt"]
    model = mlflow.pytorch.load_model(f"runs:/{outcome.run_id}/model")  # the MLflow PyTorch model
    assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 3)

    # The same name again, with more epochs: the same MLflow run continues from epoch 1,
    # its steps now through torch.compile (under DDP, from the loaded checkpoint).
    first = ckpt.load(Path(outcome.checkpoint_dir) / ckpt.CHECKPOINT_FILE, "first run")
    resumed = fit(replace(config, epochs=2, compile=True))
    assert resumed.run_id == outcome.run_id
    # The resumed run started at epoch 1: epoch 0's record is the first run's, to the last
    # digit of its timing, so it was not trained again; one epoch was added.
    last = ckpt.load(Path(resumed.checkpoint_dir) / ckpt.CHECKPOINT_FILE, "resumed run")
    assert first["epoch"] == 1 and last["epoch"] == 2 and len(last["history"]) == 2
    assert last["history"][0] == first["history"][0]
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_top1_err")]
    assert steps == [0, 1]
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert client.get_metric_history(run.info.run_id, "train_loss")[-1].value > 0
