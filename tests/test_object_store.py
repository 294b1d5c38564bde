"""The object-store path end to end, as the README shows it for a cluster: the embedded
dataset prepared into a bucket of a real S3-compatible server (moto's, on a local port),
a LeNet-5 trained from it with its checkpoints in the bucket, its driver killed and the
run resumed from the bucket's checkpoint, and predictions from the bucket by the ensemble
the suite shares, whose members Ray Tune trained from a bucket (the sweep jobs/tune.py
runs, in its seed mode: `trained_ensemble` in tests/conftest.py).

Every command is a real `python jobs/<name>.py` process given only the standard
variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...). The preparation, the ensemble and
the prediction join the session's Ray, whose workers were started without them: they
reach the bucket only if the job hands the variables to its workers. So does the training
driver that is killed, as a job on a running cluster whose driver dies: Ray ends the job's
actors and placement groups with it, and the rerun, a new job, resumes from the bucket.
"""

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import ray
from mlflow.tracking import MlflowClient
from ray_train_runs import wait_for_epoch

from alexnet import checkpoint as ckpt
from alexnet import tracking
from alexnet.data import manifest as mf
from alexnet.data.digits import export_digits
from alexnet.data.prepare import prepare
from alexnet.store import ObjectPath

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "alexnet-tests"


def run(command: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def joined_env(ray_session, s3_server) -> dict[str, str]:
    """A job's environment on the session's cluster: the store's variables and its address."""
    return {**os.environ, **s3_server.env, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}


@pytest.fixture(scope="module")
def digits_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded dataset in ImageNet's layout, where a rerun finds the same files."""
    src = tmp_path_factory.mktemp("digits-src") / "digits"
    export_digits(src)
    return src


@pytest.fixture(scope="module")
def bucket_data(s3_server, joined_env: dict[str, str], digits_src: Path) -> str:
    s3_server.create_bucket(BUCKET)
    uri = f"s3://{BUCKET}/digits"
    out = run(["jobs/prepare_data.py", "--src", str(digits_src), "--out", uri], joined_env)
    assert "[prepare] done: 1438 train, 359 val" in out.stdout
    return uri


def test_the_embedded_dataset_is_prepared_into_the_bucket_and_a_rerun_keeps_it(
        bucket_data: str, digits_src: Path, s3_env, capsys: pytest.CaptureFixture) -> None:
    root = ObjectPath(bucket_data)
    manifest, classes = mf.load(root)
    assert len(classes) == 10 and manifest.splits["train"].images == 1438 and manifest.splits["val"].images == 359
    assert all((root / s).is_file() for split in ("train", "val") for s in manifest.splits[split].shards)
    assert (root / mf.SKIPPED).read_text().splitlines() == ["split,path,reason"]
    before = {p.name for p in (root / "train" / "chunk-00000").iterdir()}
    # A rerun reads the chunk records from the bucket and keeps every chunk. It starts no
    # Ray work (the session's workers could not reach the bucket: a rebuild would fail).
    capsys.readouterr()
    again = prepare(digits_src, bucket_data)
    assert capsys.readouterr().out.count("already done, kept") == 2
    assert again == manifest and {p.name for p in (root / "train" / "chunk-00000").iterdir()} == before


def latest_checkpoint(run_dir: ObjectPath) -> dict:
    """The newest checkpoint Ray Train kept in the bucket, read through a local copy."""
    newest = max((p for p in run_dir.glob("checkpoint_*") if p.is_dir()), key=lambda p: p.name)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / ckpt.CHECKPOINT_FILE
        local.write_bytes((newest / ckpt.CHECKPOINT_FILE).read_bytes())
        return ckpt.load(local, str(newest))


def test_train_from_the_bucket_kill_the_driver_and_resume(
        bucket_data: str, joined_env: dict[str, str], s3_env, tmp_path: Path) -> None:
    storage = f"s3://{BUCKET}/runs"
    train = ["jobs/train.py", "--arch", "lenet5", "--data", bucket_data, "--storage", storage, "--epochs", "2",
             "--batch-size", "64", "--experiment", "test-s3", "--name", "from-bucket", "--log-every", "5"]
    run_dir = ObjectPath(storage) / "from-bucket"
    client = MlflowClient(tracking.tracking_uri())
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([sys.executable, *train], cwd=ROOT, env=joined_env, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        run_id = wait_for_epoch(client, "test-s3", first, ObjectPath(storage), "from-bucket")
        os.killpg(first.pid, signal.SIGKILL)  # the driver, at once; the cluster stays
        first.wait(timeout=60)
    assert client.get_run(run_id).info.status == "RUNNING"  # nobody was left to close it
    before = latest_checkpoint(run_dir)

    second = run(train, joined_env, timeout=900)
    assert f"MLflow run {run_id} (resumed)" in second.stdout
    exp = client.get_experiment_by_name("test-s3")
    assert [r.info.run_id for r in client.search_runs([exp.experiment_id])] == [run_id]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "val_top1_err")] == [0, 1]
    # It went on from the bucket's checkpoint: the epochs before it keep the first
    # driver's record to the last digit of their timing, so they were not trained again.
    after = latest_checkpoint(run_dir)
    assert 1 <= before["epoch"] < after["epoch"] == 2 and after["history"][:before["epoch"]] == before["history"]


def test_the_shared_ensemble_was_trained_by_tune_from_a_bucket_and_predicts_from_it(
        trained_ensemble, joined_env: dict[str, str], s3_env, tmp_path: Path) -> None:
    """The ensemble the suite shares (`trained_ensemble`, tests/conftest.py) was trained by
    Ray Tune's seed sweep from a bucket, with Tune's state there, and `jobs/predict.py`
    scores the bucket's validation shards as the ensemble run logged."""
    client = MlflowClient(tracking.tracking_uri())
    record = client.get_run(trained_ensemble.run_id)
    ensemble, data = record.data, record.data.params["data"]
    bucket = data.split("/")[2]
    assert data.startswith("s3://") and ensemble.params["members"] == "2"
    assert any((ObjectPath(f"s3://{bucket}/runs") / f"{record.info.run_name}-members").iterdir())  # Tune's state
    for member in trained_ensemble.member_run_ids:
        assert client.get_run(member).data.params["data"] == data
    seeds = client.get_run(client.get_run(trained_ensemble.member_run_ids[0]).data.tags[tracking.PARENT_TAG])
    assert seeds.data.params["seeds"] == "0..1" and seeds.data.params["max_concurrent"] == "2"  # --max-concurrent 2

    predictions = tmp_path / "val.csv"
    run(["jobs/predict.py", "--run", trained_ensemble.run_id, "--data", data, "--out", str(predictions)], joined_env)
    preds = pd.read_csv(predictions)
    assert len(preds) == 15 and preds["image"].is_unique
    assert 100 * (preds["class_1"] != preds["label"]).mean() == pytest.approx(ensemble.metrics["ensemble_top1_err"])
