"""Shared fixtures: one local Ray for the whole session, small real data, and an MLflow
store of the session's own, so tests never touch the project's mlruns.db."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray
from mlflow.tracking import MlflowClient
from PIL import Image
from sklearn.datasets import load_digits

from alexnet import tracking
from alexnet.assemble import EnsembleOutcome
from alexnet.data.digits import wnid
from alexnet.data.prepare import prepare
from alexnet.ray_setup import init_ray

# Ray Train's preemption watcher (an actor per run, polling for spot-node drains) has
# nothing to watch on a test machine; every job a test starts inherits this.
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlruns.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


@pytest.fixture(scope="session")
def ray_session():
    """Ray start-up costs seconds: every test that needs Ray shares this one.

    It is CPU-only on every host, so every test that trains, tunes or scores through it
    means the CPU path: `device="auto"` resolves to CPU workers, and two of them fit on
    a one-GPU machine. `num_gpus=0` keeps a GPU out of the cluster's resources (what
    `plan_placement` and the scorers' `inference_resources` read); and since Ray (2.60 here) no
    longer hides the GPUs from tasks that hold none (RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO),
    CUDA_VISIBLE_DEVICES="" in every task's environment keeps code that looks for a GPU
    itself (the ensemble's `MemberScorer`: `torch.cuda.is_available()`) on the CPU too.
    The test process itself still sees a GPU, for tests that mean it.

    The dashboard runs because Ray Train (2.60) frees the placement group of a run whose
    controller was killed (a trial that ASHA stops) only through the state API it serves:
    without it the freed CPUs never come back and the next trial waits for ever.

    Idle worker processes are kept for a minute rather than one second: the suite's ~20
    training runs each start a dozen actors and tasks, and a kept worker spares a new
    process its Python and Ray start-up (a run's CPU time fell by about a tenth)."""
    if not ray.is_initialized():
        init_ray(address="local", num_cpus=2, num_gpus=0, include_dashboard=True, log_to_driver=True,
                 _system_config={"idle_worker_killing_time_threshold_ms": 60_000},
                 runtime_env={"env_vars": {"MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
                                           "CUDA_VISIBLE_DEVICES": ""}})
    yield
    ray.shutdown()


def write_digit_tree(root: Path, classes: int, per_class: dict[str, int]) -> Path:
    """A slice of the real digits scans in ImageNet's class-folder layout."""
    digits = load_digits()
    for split, n in per_class.items():
        for c in range(classes):
            folder = root / split / wnid(c)
            folder.mkdir(parents=True, exist_ok=True)
            picks = np.flatnonzero(digits.target == c)
            picks = picks[:n] if split == "train" else picks[-n:]
            for i in picks:
                ink = (255 - digits.images[i] * 16).astype(np.uint8)
                Image.fromarray(ink, "L").resize((32, 32)).save(folder / f"d{i:05d}.JPEG")
    return root


@pytest.fixture(scope="session")
def tiny_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digit_tree(tmp_path_factory.mktemp("src"), classes=3,
                            per_class={"train": 12, "val": 5})


@pytest.fixture(scope="session")
def tiny_data(ray_session, tiny_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    prepare(tiny_src, out)
    return out


@pytest.fixture
def data_copy(tiny_data: Path, tmp_path: Path) -> Path:
    """A copy a test may damage."""
    dst = tmp_path / "data"
    shutil.copytree(tiny_data, dst)
    return dst


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A real S3-compatible server on a free local port (`s3_server.start_s3_server`),
    started once for the tests that need one and stopped at the end."""
    from s3_server import start_s3_server

    server = start_s3_server(tmp_path_factory.mktemp("s3") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process set up as a user reaching the server: the standard variables only."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return s3_server.env


ENSEMBLE_BUCKET = "ensemble-tests"


@pytest.fixture(scope="session")
def trained_ensemble(ray_session, tiny_data: Path, s3_server, tmp_path_factory: pytest.TempPathFactory):
    """Two members (seeds 0 and 1) trained for one epoch by `jobs/ensemble.py --train` (the
    seed mode of the sweep) from shards in a bucket of the S3-compatible server, with
    Tune's state and Ray Train's checkpoints in the bucket too, then assembled: real runs
    that the ensemble, prediction, figure and object-store tests share.

    The job is a process of its own, joined to the session's Ray as a job joins a running
    cluster, given only the standard variables (AWS_ENDPOINT_URL, ...): the session's
    workers were started without them, so the trials reach the bucket only if the job
    hands them on. The members are LeNet-5s: what these tests check (merging, the record,
    reading checkpoints back, a bucket) does not depend on the network, and LeNet-5's runs
    cost a fraction of AlexNet's. They train side by side (`--max-concurrent 2`, half the
    CPUs each): a run's start-up and shutdown are mostly waiting, which two runs overlap."""
    data = f"s3://{ENSEMBLE_BUCKET}/tiny"
    s3_server.upload(tiny_data, data)
    env = {**os.environ, **s3_server.env, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    job = subprocess.run(
        [sys.executable, "jobs/ensemble.py", "--train", "--members", "2", "--max-concurrent", "2", "--epochs", "1",
         "--data", data, "--train-args", "--arch lenet5 --batch-size 12 --log-every 4",
         "--storage", f"s3://{ENSEMBLE_BUCKET}/runs", "--name", "ens-test", "--experiment", "test-ensemble"],
        cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, timeout=900)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    run_id = re.search(r"done\. MLflow run (\w+):", job.stdout).group(1)
    client = MlflowClient(tracking.tracking_uri())
    run = client.get_run(run_id).data
    members = run.params["member_run_ids"].split(",")
    prefixes = zip(*(client.get_metric_history(run_id, f"ensemble_top{k}_err_by_members") for k in (1, 5)),
                   strict=True)
    report = client.download_artifacts(run_id, "report.md", str(tmp_path_factory.mktemp("ensemble")))
    return EnsembleOutcome(
        run_id, members,
        [[run.metrics[f"member_{i}_top{k}_err"] for k in (1, 5)] for i in range(1, len(members) + 1)],
        [[top1.value, top5.value] for top1, top5 in sorted(prefixes, key=lambda p: p[0].step)],
        Path(report).read_text().rstrip("\n"))
