"""Failures the driver must catch before any training starts, with real causes."""

import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import ray
from handmade import handmade_data
from ray.train import WorkerGroupError

from alexnet import tracking
from alexnet.config import TrainConfig
from alexnet.data import manifest as mf
from alexnet.errors import UserError
from alexnet.trainer import (
    changed_settings,
    check_resume,
    check_writable,
    default_name,
    fit,
    plan_placement,
    preflight,
    run_lock,
    run_params,
    worker_user_error,
)

ROOT = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_unreachable_tracking_server_fails_fast_and_clearly(tiny_data: Path) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    out = subprocess.run([sys.executable, "jobs/train.py", "--data", str(tiny_data), "--batch-size", "8"], cwd=ROOT,
                         env={**os.environ, "MLFLOW_TRACKING_URI": uri},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: MLFLOW_TRACKING_URI={uri} does not answer")
    assert "Started a local Ray" not in out.stderr  # refused before Ray started


def test_unwritable_storage_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match=r"--storage .*cannot be written"):
        check_writable(str(blocker / "runs"))
    check_writable(str(tmp_path / "runs"))  # a fresh directory is fine


@pytest.mark.parametrize("flags, cluster, message", [
    ({"workers": 4, "cpus_per_worker": 1.0}, {"CPU": 2.0}, "needs more than the cluster's 2 CPUs"),
    ({"workers": 2, "device": "cuda"}, {"CPU": 16.0, "GPU": 1.0}, "needs 2 GPUs but the cluster has 1"),
    ({"workers": 1, "device": "cuda"}, {"CPU": 2.0}, "needs 1 GPUs but the cluster has 0"),
    ({"workers": 64}, {"CPU": 2.0}, "--workers 64 on CPU would get 0.0156 CPU each.*lower --workers \\(at most 4"),
    ({"workers": 2, "cpus_per_worker": 0.1}, {"CPU": 2.0}, "raise --cpus-per-worker to at least 0.25"),
])
def test_workers_the_cluster_can_never_place(flags: dict, cluster: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        plan_placement(TrainConfig(**flags), cluster)


def test_small_cpu_machine_leaves_cpus_for_the_input_pipeline() -> None:
    plan = plan_placement(TrainConfig(workers=2), {"CPU": 2.0})
    assert not plan.use_gpu and plan.cpus_per_worker == 0.5
    assert plan.data.augment_actors >= 1 and plan.data.read_cpus < 1
    gpu = plan_placement(TrainConfig(workers=1), {"CPU": 16.0, "GPU": 1.0})
    assert gpu.use_gpu and gpu.cpus_per_worker == 1.0 and gpu.data.augment_actors > 1


def test_four_cpu_workers_per_core_is_the_most() -> None:
    assert plan_placement(TrainConfig(workers=4), {"CPU": 2.0}).cpus_per_worker == 0.25
    with pytest.raises(UserError, match="at most 4 on 2 CPUs"):
        plan_placement(TrainConfig(workers=8), {"CPU": 2.0})
    gpu = plan_placement(TrainConfig(workers=8, cpus_per_worker=0.1), {"CPU": 2.0, "GPU": 8.0})
    assert gpu.use_gpu and gpu.cpus_per_worker == 0.1  # a GPU worker's compute is its GPU


@pytest.mark.parametrize("decode, cluster, on_device", [
    ("cpu", {"CPU": 4.0, "GPU": 1.0}, False),
    ("gpu", {"CPU": 2.0}, True),  # a CPU worker decodes on its CPU
    ("auto", {"CPU": 4.0, "GPU": 1.0}, True),  # 4 CPUs per GPU: too few to augment for it
    ("auto", {"CPU": 16.0, "GPU": 1.0}, False),
    ("auto", {"CPU": 2.0}, False),  # no GPU: the actors decode
])
def test_where_jpegs_are_decoded(decode: str, cluster: dict, on_device: bool) -> None:
    assert plan_placement(TrainConfig(decode=decode), cluster).decode_on_device is on_device


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return handmade_data(tmp_path / "data")


@pytest.fixture
def cfg(data: Path, tmp_path: Path) -> TrainConfig:
    return TrainConfig(data=str(data), epochs=1, batch_size=4, storage=str(tmp_path / "runs"),
                       experiment="test-trainer", name=f"run-{tmp_path.name}")


def test_a_truncated_shard_is_named_before_training(data: Path, cfg: TrainConfig) -> None:
    preflight(cfg)
    shard = data / "val" / "part-1.parquet"
    shard.write_bytes(shard.read_bytes()[:-20])  # the footer is cut off, as by a full disk or a killed copy
    with pytest.raises(UserError) as e:
        preflight(cfg)
    assert str(e.value).startswith(f"{shard}: shard is truncated or corrupt (")
    assert "re-run prepare_data.py on the same --out" in str(e.value)
    shard.write_bytes(b"PAR1 not parquet at all")
    with pytest.raises(UserError, match="part-1.parquet: shard is truncated or corrupt"):
        mf.load(data, ("val",))


def test_a_batch_larger_than_the_training_set_is_refused(cfg: TrainConfig) -> None:
    with pytest.raises(UserError, match="--batch-size 16 is larger than the 12 training images .* at most 12"):
        preflight(replace(cfg, batch_size=16))
    preflight(replace(cfg, batch_size=12))


def test_default_names_differ_within_one_second() -> None:
    names = {default_name("alexnet") for _ in range(50)}
    assert len(names) == 50


def test_a_second_job_on_the_same_name_is_refused_before_ray(cfg: TrainConfig, tmp_path: Path) -> None:
    with run_lock(cfg.storage, cfg.name, "training run"):  # this process holds it, as a live job would
        with pytest.raises(UserError) as e:
            fit(cfg)
    msg = str(e.value)
    assert msg.startswith(f"training run '{cfg.name}' in --storage {cfg.storage} is in use by pid {os.getpid()} on ")
    assert f"delete {tmp_path / 'runs' / '.locks' / cfg.name / '.lock'}" in msg
    assert not (tmp_path / "runs" / cfg.name).exists()  # Ray Train's run folder stays Ray Train's


def test_resuming_with_other_settings_names_them(cfg: TrainConfig, data: Path) -> None:
    manifest, _ = mf.load(data)
    client = tracking.client()
    exp_id = tracking.experiment_id(client, cfg.experiment)
    run_id, _ = tracking.start_or_resume_run(client, exp_id, cfg.name, run_params(cfg, cfg.name, manifest))

    changed = replace(cfg, lr=0.02, seed=3, epochs=5)
    with pytest.raises(UserError) as e:
        fit(changed)  # refused before Ray Train (or Ray) is touched
    msg = str(e.value)
    assert f"--name {cfg.name} resumes MLflow run {run_id}" in msg and "\n" not in msg
    assert "lr 0.01 -> 0.02" in msg and "seed 0 -> 3" in msg and "epochs" not in msg.split("(only")[0]

    # Raising --epochs and the speed settings is how a run is continued.
    faster = replace(cfg, epochs=5, compile=True, workers=2, log_every=1, max_failures=-1, threads_per_worker=1,
                     cpus_per_worker=0.5, augment_actors=2, augment_cpus=0.5, device="cpu", channels_last=False)
    check_resume(client, exp_id, cfg.name, run_params(faster, cfg.name, manifest))


def test_resuming_a_run_whose_checkpoints_are_not_in_storage_is_refused(cfg: TrainConfig, data: Path) -> None:
    """Epochs logged in MLflow but no checkpoint under --storage (another --storage, or
    deleted): continuing would train from epoch 0 into the same MLflow run."""
    manifest, _ = mf.load(data)
    client = tracking.client()
    exp_id = tracking.experiment_id(client, cfg.experiment)
    params = run_params(cfg, cfg.name, manifest)
    run_id, _ = tracking.start_or_resume_run(client, exp_id, cfg.name, params)
    check_resume(client, exp_id, cfg.name, params)  # nothing logged yet: a run that died in its first epoch
    tracking.log_epoch(client, run_id, 0, {"val_top1_err": 50.0})
    with pytest.raises(UserError, match=f"logged 1 epoch\\(s\\), but .*{cfg.name} holds no checkpoint"):
        check_resume(client, exp_id, cfg.name, params)
    (Path(params["storage"]) / cfg.name / "checkpoint_2026-01-01_00-00-00.000000").mkdir(parents=True)
    check_resume(client, exp_id, cfg.name, params)


def test_a_setting_the_old_run_never_logged_is_not_a_difference() -> None:
    logged = {"lr": "0.01", "seed": "0", "epochs": "1"}
    assert changed_settings(logged, {"lr": 0.01, "seed": 0, "epochs": 9, "bias_lr_mult": 2.0}) == []
    assert changed_settings(logged, {"lr": 0.1, "seed": 0}) == ["lr 0.01 -> 0.1"]


def test_object_store_storage_is_not_locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with run_lock("s3://bucket/runs", "x", "training run"):
        pass
    assert list(tmp_path.iterdir()) == []  # no local folder named after the URI


def test_a_user_error_inside_a_ray_task_comes_back_as_its_own_one_line_message(ray_session) -> None:
    @ray.remote
    def refuse() -> None:
        raise UserError("run 'x' (its last checkpoint): trained with an older network layout; retrain it")

    try:
        ray.get(refuse.remote())
    except Exception as e:  # noqa: BLE001 - Ray's wrapper, as Ray Train hands it over
        wrapped = WorkerGroupError("rank 0 failed", {0: e})
    found = worker_user_error(wrapped)
    assert str(found) == "run 'x' (its last checkpoint): trained with an older network layout; retrain it"
    assert worker_user_error(RuntimeError("something else")) is None
