"""The driver side of a training run: check inputs, open the MLflow run, size the
workers and the input pipeline for the cluster, fit a TorchTrainer, record the result."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train.torch import TorchTrainer

from alexnet import checkpoint as ckpt
from alexnet import tracking
from alexnet.config import TrainConfig
from alexnet.data import manifest as mf
from alexnet.data.pipeline import DataResources, plan_resources, train_dataset
from alexnet.errors import UserError
from alexnet.model import AlexNet
from alexnet.plots import training_curves
from alexnet.worker import CHECKPOINT_FILE, train_func_per_worker


@dataclass
class TrainOutcome:
    run_id: str
    run_name: str
    metrics: dict[str, float]  # the last epoch's
    checkpoint_dir: str | None


def resolve_path(path: str) -> Path:
    """Relative paths are taken from the current directory or, failing that, from the
    project: a job submitted with --working-dir runs in a temporary copy of the project."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p.resolve()
    return tracking.project_root() / p


def storage_uri(storage: str) -> str:
    return storage if "://" in storage else str(resolve_path(storage))


@dataclass(frozen=True)
class Placement:
    use_gpu: bool
    cpus_per_worker: float
    data: DataResources


def plan_placement(cfg: TrainConfig, cluster: dict[str, float]) -> Placement:
    """Decide devices and CPU shares, or refuse what the cluster can never place."""
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    use_gpu = cfg.device == "cuda" or (cfg.device == "auto" and gpus >= 1)
    if use_gpu and gpus < cfg.workers:
        raise UserError(f"--workers {cfg.workers} needs {cfg.workers} GPUs but the cluster has "
                        f"{gpus:g}; lower --workers or pass --device cpu")
    per_worker = cfg.cpus_per_worker or (1.0 if use_gpu else min(1.0, 0.5 * cpus / cfg.workers))
    if per_worker * cfg.workers > cpus - 0.25:
        raise UserError(f"--workers {cfg.workers} x --cpus-per-worker {per_worker:g} needs more than "
                        f"the cluster's {cpus:g} CPUs (with some left for the input pipeline); "
                        "lower --workers or --cpus-per-worker")
    data = plan_resources(cpus, per_worker * cfg.workers, cfg.augment_actors, cfg.augment_cpus)
    return Placement(use_gpu, per_worker, data)


def preflight(cfg: TrainConfig) -> tuple[Path, mf.Manifest]:
    """The checks that need no cluster, run before Ray starts: the data and the tracking
    server. Each failure is a UserError naming the path or URI and the fix."""
    data_root = resolve_path(cfg.data)
    manifest, _ = mf.load(data_root)
    tracking.check_reachable(tracking.tracking_uri())
    check_writable(cfg.storage)
    return data_root, manifest


def check_writable(storage: str) -> None:
    """Find an unwritable checkpoint directory now, not at the end of the first epoch."""
    if "://" in storage:
        return  # cloud storage: Ray reports access errors on the first write
    path = Path(storage_uri(storage))
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"--storage {storage}: checkpoints cannot be written there ({e.strerror or e}); "
                        "pass a writable directory") from e


def fit(cfg: TrainConfig, *, tags: dict[str, str] | None = None,
        callbacks: list[Any] | None = None, cluster_share: float = 1.0) -> TrainOutcome:
    """Train per `cfg` on the connected Ray cluster; resumes a run of the same name.

    A Tune trial passes its MLflow parent in `tags`, a `TuneReportCallback` in
    `callbacks`, and the share of the cluster each concurrent trial may size itself to."""
    data_root, manifest = preflight(cfg)
    uri = tracking.tracking_uri()
    client = tracking.client()
    exp_id = tracking.experiment_id(client, cfg.experiment)
    name = cfg.name or f"alexnet-{time.strftime('%Y%m%d-%H%M%S')}"
    params = {**asdict(cfg), "name": name, "num_classes": manifest.num_classes,
              "train_images": manifest.splits["train"].images, "val_images": manifest.splits["val"].images}
    cluster = {k: v * cluster_share for k, v in ray.cluster_resources().items()}
    placement = plan_placement(cfg, cluster)
    run_id, resumed = tracking.start_or_resume_run(client, exp_id, name, params, tags)
    print(f"[train] MLflow run {run_id} ({'resumed' if resumed else 'new'}) '{name}' in "
          f"experiment '{cfg.experiment}' at {uri}", flush=True)
    print(f"[train] {cfg.workers} worker(s) on {'GPU' if placement.use_gpu else 'CPU'}, "
          f"{placement.cpus_per_worker:g} CPU each; {placement.data.augment_actors} augmentation "
          f"actor(s) of {placement.data.augment_cpus:g} CPU", flush=True)

    trainer = TorchTrainer(
        train_func_per_worker,
        train_loop_config={
            "train": asdict(cfg), "manifest": asdict(manifest), "data_root": str(data_root),
            "tracking_uri": uri, "run_id": run_id, "data_resources": asdict(placement.data),
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.workers, use_gpu=placement.use_gpu,
            resources_per_worker={"CPU": placement.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_uri(cfg.storage),
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2), callbacks=callbacks),
        datasets={"train": train_dataset(str(data_root), manifest, placement.data, seed=None)},
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
    )
    try:
        result = trainer.fit()
    except BaseException as e:
        client.set_terminated(run_id, "FAILED")
        if "No space left on device" in str(e):
            raise UserError(f"--storage {cfg.storage}: the disk filled up while writing a checkpoint. "
                            f"The last good checkpoint is intact; free space and rerun with --name {name} "
                            "to resume from it") from e
        raise
    outcome = record_result(client, run_id, name, result, data_root)
    client.set_terminated(run_id, "FINISHED")
    return outcome


def record_result(client: Any, run_id: str, name: str, result: ray.train.Result,
                  data_root: Path) -> TrainOutcome:
    """Artifacts: the final checkpoint, the model as an MLflow PyTorch model, the class
    list, the training curves."""
    client.log_artifact(run_id, str(data_root / mf.CLASSES))
    checkpoint_dir = None
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as d:
            state = ckpt.load(os.path.join(d, CHECKPOINT_FILE), f"run {run_id} ('{name}')")
            client.log_artifacts(run_id, d, "checkpoint")
        checkpoint_dir = result.checkpoint.path
        model = ckpt.load_weights(AlexNet(**state["model_args"]), state["model"], f"run {run_id} ('{name}')")
        tracking.log_pytorch_model(run_id, model, metadata={
            "input": "float32 NCHW 224x224, RGB in 0-255 minus rgb_mean", "rgb_mean": state.get("rgb_mean")})
        with tempfile.TemporaryDirectory() as tmp:
            png = training_curves(state["history"], Path(tmp) / "training_curves.png", title=name)
            client.log_artifact(run_id, str(png))
    metrics = {k: float(v) for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
    return TrainOutcome(run_id, name, metrics, checkpoint_dir)
