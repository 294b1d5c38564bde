"""Every registered network trains an epoch through `jobs/train.py` itself (in this
process, joined to the session's Ray): its paper's recipe under the flags, the Ray Data
pipeline, a Ray Train worker, the checkpoint in --storage and the MLflow run with its
model. Networks that can take a small input get `--input-size 32` (the pipeline's 224
crops resized on the device); ZFNet, whose classifier fixes its input, trains at 224.

LeNet-5, AlexNet and GoogLeNet train through a job in other tests (the object-store
test, the submitted job, tests/test_archs_train.py), so they are not repeated here. Each
run costs a Ray Train start-up (~20 s of both cores on 2 vCPUs) whatever the network, so
the eleven would add about 7 minutes to `make test`, which must stay within 15: they run
with `make test-archs` (marker `every_network`). tests/test_archs_train.py trains every
network in `make test` on the same pipeline's batches, with the worker's own code.
"""

import math
from pathlib import Path

import mlflow.pytorch
import pytest
import torch
from job_loader import load_job
from mlflow.tracking import MlflowClient
from test_archs_train import small_input

from alexnet import checkpoint as ckpt
from alexnet import models, tracking

TRAINED_ELSEWHERE = {"lenet5", "alexnet", "googlenet"}
NAMES = [n for n in models.names() if n not in TRAINED_ELSEWHERE]


@pytest.mark.every_network
@pytest.mark.parametrize("name", NAMES)
def test_the_training_job_trains_every_network(name: str, ray_session, tiny_data: Path, tmp_path: Path) -> None:
    storage = tmp_path / "runs"
    run_name = f"{name}-job"
    assert load_job("train").main(["--arch", name, "--input-size", str(small_input(name)), "--data", str(tiny_data),
                                   "--epochs", "1", "--batch-size", "12", "--storage", str(storage),
                                   "--experiment", "test-archs-job", "--name", run_name, "--log-every", "3"]) == 0
    client = MlflowClient(tracking.tracking_uri())
    run_id = tracking.find_run(client, client.get_experiment_by_name("test-archs-job").experiment_id, run_name)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["arch"] == name
    recipe = models.get(name).recipe  # its paper's recipe, under the flags given
    for key, value in recipe.items():
        if key not in {"epochs", "batch_size"}:  # the flags given
            assert run.data.params[key] == str(value), key
    metrics = run.data.metrics
    assert metrics["val_images"] == 15 and metrics["bad_images"] == 0  # every validation image scored once
    assert math.isfinite(metrics["train_loss"]) and metrics["train_loss"] > 0  # 36 images trained on
    assert [m.step for m in client.get_metric_history(run_id, "val_top1_err")] == [0]

    (checkpoint_dir,) = (p for p in (storage / run_name).glob("checkpoint_*") if p.is_dir())  # Ray Train's
    state = ckpt.load(checkpoint_dir / ckpt.CHECKPOINT_FILE, name)
    assert state["epoch"] == 1 and state["model_args"]["arch"] == name
    assert state["model_args"]["input_size"] == (small_input(name) or models.get(name).input_size)
    network = models.from_model_args(state["model_args"])
    ckpt.load_weights(network, state["model"], name)  # the checkpoint rebuilds the network it names
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"checkpoint", "classes.json", "training_curves.png", "conv1_kernels.png"} <= artifacts
    exported = mlflow.pytorch.load_model(f"runs:/{run_id}/model")  # the MLflow model takes the 224 crops
    assert exported(torch.zeros(2, 3, 224, 224)).shape == (2, 3)
