"""What someone else logged to the tracking server never runs here: a planted checkpoint
is refused by name by jobs/predict.py and by the ensemble's member gathering (run ids,
--parent, --tag), and the MLflow model the training run logs is not a pickle. Real
MLflow runs in the session's store; no Ray."""

import json
import sys
from pathlib import Path

import mlflow.pytorch
import pytest
import ray.train
import torch
from mlflow.tracking import MlflowClient

from alexnet import checkpoint as ckpt
from alexnet import members as mb
from alexnet import tracking
from alexnet.assemble import member_run_ids
from alexnet.config import EnsembleConfig, TrainConfig
from alexnet.errors import UserError
from alexnet.model import AlexNet
from alexnet.trainer import record_result
from alexnet.worker import save_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
import predict as predict_job  # noqa: E402
from test_checkpoint import WritesAFile, trained_state  # noqa: E402

EXPERIMENT = "test-security"


def plant_run(client: MlflowClient, checkpoint: Path, name: str, tags: dict[str, str] | None = None) -> str:
    """A FINISHED run with classes.json and `checkpoint` as checkpoint/checkpoint.pt, as
    anyone who can log to the tracking server can make one."""
    run = client.create_run(tracking.experiment_id(client, EXPERIMENT), run_name=name, tags=tags or {})
    run_id = run.info.run_id
    classes = checkpoint.parent / "classes.json"
    classes.write_text(json.dumps(["n0", "n1", "n2"]))
    client.log_artifact(run_id, str(classes))
    client.log_artifact(run_id, str(checkpoint), "checkpoint")
    client.log_param(run_id, "seed", "0")
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path]:
    """checkpoint.pt whose unpickling writes `marker`, and the marker's path."""
    folder, marker = tmp_path / "planted", tmp_path / "pwned"
    folder.mkdir()
    torch.save({"model": WritesAFile(marker), "model_args": {"num_classes": 3}}, folder / ckpt.CHECKPOINT_FILE)
    return folder / ckpt.CHECKPOINT_FILE, marker


def test_predict_refuses_a_planted_checkpoint_by_run_and_never_runs_it(planted, tmp_path: Path) -> None:
    checkpoint, marker = planted
    client = tracking.client()
    run_id = plant_run(client, checkpoint, "planted")
    images, out = tmp_path / "images", tmp_path / "out.csv"
    images.mkdir()
    with pytest.raises(UserError) as e:
        predict_job.main(["--run", run_id, "--images", str(images), "--out", str(out)])
    message = str(e.value)
    assert message.startswith(f"member {run_id} ('planted'): checkpoint.pt holds objects that are not tensors")
    assert "will not be unpickled" in message and "\n" not in message

    ensemble = client.create_run(tracking.experiment_id(client, EXPERIMENT), run_name="ensemble-with-it")
    client.log_param(ensemble.info.run_id, "member_run_ids", run_id)  # an ensemble run that names it
    with pytest.raises(UserError, match=f"member {run_id} .*will not be unpickled"):
        predict_job.main(["--run", ensemble.info.run_id, "--images", str(images), "--out", str(out)])
    assert not marker.exists() and not out.exists()


def test_ensemble_gathering_refuses_it_by_run_ids_parent_and_tag(planted) -> None:
    checkpoint, marker = planted
    client = tracking.client()
    parent = client.create_run(tracking.experiment_id(client, EXPERIMENT), run_name="sweep").info.run_id
    run_id = plant_run(client, checkpoint, "trial-0", {tracking.PARENT_TAG: parent, "team": "planted"})
    for cfg in (EnsembleConfig(runs=(run_id,), members=1), EnsembleConfig(parent=parent, members=1),
                EnsembleConfig(tag="team=planted", member_experiment=EXPERIMENT, members=1)):
        ids = member_run_ids(client, cfg, "ens")  # what alexnet/assemble.py gathers, then loads
        assert ids == [run_id]
        with pytest.raises(UserError, match=rf"^member {run_id} \('trial-0'\): checkpoint.pt holds objects"):
            [mb.load_member(client, i) for i in ids]
    assert not marker.exists()


def test_weights_of_an_older_layout_are_refused_by_run_before_scoring(tmp_path: Path) -> None:
    """An honest checkpoint from before the classifier's layers were named: a one-line
    error naming the run, not a load_state_dict traceback from inside the scorer."""
    model = AlexNet(3)
    linear = [name for name, m in model.classifier.named_children() if isinstance(m, torch.nn.Linear)]
    before = dict(zip(linear, ["2", "5", "7"], strict=True))  # fc6-8 in the unnamed nn.Sequential of before
    old = {".".join(["classifier", before[k.split(".")[1]], k.split(".")[2]]) if k.startswith("classifier.") else k: v
           for k, v in model.state_dict().items()}
    (tmp_path / "old").mkdir()
    ckpt.save(tmp_path / "old" / ckpt.CHECKPOINT_FILE, {"model": old, "model_args": {"num_classes": 3}})
    run_id = plant_run(tracking.client(), tmp_path / "old" / ckpt.CHECKPOINT_FILE, "before-named-layers")
    (tmp_path / "images").mkdir()
    with pytest.raises(UserError) as e:
        predict_job.main(["--run", run_id, "--images", str(tmp_path / "images"), "--out", str(tmp_path / "o.csv")])
    assert str(e.value).startswith(f"member {run_id} ('before-named-layers'): its weights do not match")
    assert str(e.value).endswith("trained with an older network layout (classifier indices changed in this "
                                 "version); retrain it")


def test_record_result_logs_a_model_that_loads_with_pickle_refused(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's last step of a training run, on a checkpoint as the workers write it:
    the MLflow model it logs is a torch.export archive, which MLflow loads with pickle
    deserialization disallowed (it checks the archive first)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "classes.json").write_text(json.dumps(["n0", "n1", "n2"]))
    model, state = trained_state(TrainConfig())
    (tmp_path / "ckpt").mkdir()
    save_checkpoint(str(tmp_path / "ckpt"), state)
    result = ray.train.Result(metrics={"val_top1_err": 61.5}, checkpoint=ray.train.Checkpoint.from_directory(
        str(tmp_path / "ckpt")), error=None, path=str(tmp_path))
    client = tracking.client()
    run_id = client.create_run(tracking.experiment_id(client, EXPERIMENT), run_name="model").info.run_id
    record_result(client, run_id, "model", result, tmp_path / "data")
    logged = {a.path for a in client.list_artifacts(run_id)}
    assert {"checkpoint", "classes.json", "training_curves.png"} <= logged

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    loaded = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    x = torch.rand(3, 3, 224, 224) * 255 - 120
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-4)
    info = mlflow.models.get_model_info(f"runs:/{run_id}/model")
    assert info.metadata["rgb_mean"] == state["rgb_mean"]


def test_record_result_refuses_a_planted_checkpoint_in_storage(planted, tmp_path: Path) -> None:
    """--storage may be a shared bucket: the final checkpoint is read safely before it is
    logged, and a planted one is never passed on to MLflow."""
    checkpoint, marker = planted
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "classes.json").write_text(json.dumps(["n0", "n1", "n2"]))
    result = ray.train.Result(metrics={}, checkpoint=ray.train.Checkpoint.from_directory(str(checkpoint.parent)),
                              error=None, path=str(tmp_path))
    client = tracking.client()
    run_id = client.create_run(tracking.experiment_id(client, EXPERIMENT), run_name="stored").info.run_id
    with pytest.raises(UserError, match=rf"^run {run_id} \('stored'\): checkpoint.pt holds objects"):
        record_result(client, run_id, "stored", result, tmp_path / "data")
    assert not marker.exists()
    assert "checkpoint" not in {a.path for a in client.list_artifacts(run_id)}
