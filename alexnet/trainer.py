"""The driver side of a training run: check inputs, open the MLflow run, size the
workers and the input pipeline for the cluster, fit a TorchTrainer, record the result."""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train.torch import TorchTrainer

from alexnet import checkpoint as ckpt
from alexnet import models, tracking
from alexnet.checkpoint import CHECKPOINT_FILE
from alexnet.config import TrainConfig
from alexnet.data import manifest as mf
from alexnet.data.pipeline import DataResources, plan_resources, start_epoch_clock, train_dataset
from alexnet.errors import UserError
from alexnet.locks import exclusive_lock
from alexnet.memory import network_process_env
from alexnet.plots import conv1_kernels, training_curves
from alexnet.store import Location, ObjectPath, check_reachable, is_uri, open_location
from alexnet.worker import train_func_per_worker


@dataclass
class TrainOutcome:
    run_id: str
    run_name: str
    metrics: dict[str, float]  # the last epoch's
    checkpoint_dir: str | None


def storage_uri(storage: str) -> str:
    """--storage as Ray gets it and MLflow records it: a URI in one spelling, or an absolute path."""
    return str(open_location(storage, "--storage"))


# A CPU training worker is a whole AlexNet with gradients and SGD momentum (~0.75 GB for
# 1000 classes) plus activations and a torch process; the cores are shared anyway, so
# workers past four per core only multiply that memory (--workers 64 on 2 CPUs would get
# 0.016 CPU each and run the machine out of memory).
MIN_CPUS_PER_CPU_WORKER = 0.25
# --decode auto decodes on the GPUs below this many CPUs per GPU: the augmentation actors
# deliver ~1,850-3,400 photo-like images per second per core (docs/performance.md), and a GPU
# trains tens of thousands.
AUTO_DECODE_CPUS_PER_GPU = 8


@dataclass(frozen=True)
class Placement:
    use_gpu: bool
    cpus_per_worker: float
    data: DataResources
    decode_on_device: bool = False  # --decode: the training workers decode the JPEGs


def plan_placement(cfg: TrainConfig, cluster: dict[str, float]) -> Placement:
    """Decide devices and CPU shares, or refuse what the cluster can never place."""
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    use_gpu = cfg.device == "cuda" or (cfg.device == "auto" and gpus >= 1)
    if use_gpu and gpus < cfg.workers:
        raise UserError(f"--workers {cfg.workers} needs {cfg.workers} GPUs but the cluster has "
                        f"{gpus:g}; lower --workers or pass --device cpu")
    per_worker = cfg.cpus_per_worker or (1.0 if use_gpu else min(1.0, 0.5 * cpus / cfg.workers))
    if not use_gpu and per_worker < MIN_CPUS_PER_CPU_WORKER:
        most = max(1, int(0.5 * cpus / MIN_CPUS_PER_CPU_WORKER))
        fix = (f"raise --cpus-per-worker to at least {MIN_CPUS_PER_CPU_WORKER:g}" if cfg.cpus_per_worker
               else f"lower --workers (at most {most} on {cpus:g} CPUs)")
        raise UserError(f"--workers {cfg.workers} on CPU would get {per_worker:.3g} CPU each: every worker holds "
                        f"a whole model with its optimizer state, so below {MIN_CPUS_PER_CPU_WORKER:g} CPU each "
                        f"more workers add memory, not speed; {fix}")
    if per_worker * cfg.workers > cpus - 0.25:
        raise UserError(f"--workers {cfg.workers} x --cpus-per-worker {per_worker:g} needs more than "
                        f"the cluster's {cpus:g} CPUs (with some left for the input pipeline); "
                        "lower --workers or --cpus-per-worker")
    data = plan_resources(cpus, per_worker * cfg.workers, cfg.augment_actors, cfg.augment_cpus)
    on_device = cfg.decode == "gpu" or (cfg.decode == "auto" and use_gpu and cpus < AUTO_DECODE_CPUS_PER_GPU * gpus)
    return Placement(use_gpu, per_worker, data, on_device)


def preflight(cfg: TrainConfig) -> tuple[Location, mf.Manifest]:
    """The checks that need no cluster, run before Ray starts: the data, the tracking
    server and the checkpoints' storage. Each failure is a UserError naming the path or
    URI and the fix."""
    data_root = open_location(cfg.data)
    manifest, _ = mf.load(data_root)
    train_images = manifest.splits["train"].images
    if cfg.batch_size > train_images:
        raise UserError(f"--batch-size {cfg.batch_size} is larger than the {train_images} training images in "
                        f"{data_root}, so an epoch would train no step; lower --batch-size to at most {train_images}")
    tracking.check_reachable(tracking.tracking_uri())
    check_writable(cfg.storage)
    return data_root, manifest


def check_writable(storage: str) -> None:
    """Find an unwritable checkpoint directory, or an object store that cannot be
    reached, now, not at the end of the first epoch."""
    if is_uri(storage):
        check_reachable(ObjectPath(storage, flag="--storage"), "--storage", write=True)
        return
    path = Path(storage_uri(storage))
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"--storage {storage}: checkpoints cannot be written there ({e.strerror or e}); "
                        "pass a writable directory") from e


def default_name(prefix: str) -> str:
    """A new run's name: the time for people, a random suffix so that two jobs started in
    the same second never share a run folder (the second would "resume" the first)."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def run_lock(storage: str, name: str, what: str) -> AbstractContextManager[None]:
    """The lock on run `name` under `storage`: ``<storage>/.locks/<name>/.lock``, beside
    the run folder rather than in it, where Ray Train and Tune own every file (a sweep's
    folder is restored by Tune, a trial's is a Ray Train run). A trial's name extends its
    sweep's (``<sweep>-<trial id>``), so the two never share a lock."""
    root = storage_uri(storage)
    directory = f"{root.rstrip('/')}/.locks/{name}" if "://" in root else Path(root) / ".locks" / name
    return exclusive_lock(directory, f"{what} '{name}' in --storage {storage}", "use another --name")


# Settings a resumed run may change: where and how fast it runs, not what it computes.
RESUME_MAY_CHANGE = frozenset({
    "epochs",  # raising it trains a run further: the documented way to continue one
    "compile", "compile_mode", "channels_last",  # the same step compiled, or in another memory layout
    "decode",  # the same crops, decoded elsewhere (to within a JPEG decoder's rounding)
    "log_every", "max_failures",  # progress lines and the retry budget
    "device", "workers",  # another machine: the global batch (--batch-size) stays the same
    "cpus_per_worker", "threads_per_worker", "augment_actors", "augment_cpus",  # CPU shares
})


def changed_settings(logged: dict[str, str], params: dict[str, Any]) -> list[str]:
    """'key old -> new' for each setting of a resumed run that differs from what its
    MLflow run logged. A key the run never logged (a setting added since) is not a
    difference: there is nothing to compare it with."""
    def norm(key: str, value: str) -> str:
        if key == "data" and value:
            return str(open_location(value))
        if key == "storage" and value:
            return storage_uri(value)
        return value

    return [f"{k} {logged[k]} -> {str(v)[:6000]}" for k, v in params.items()
            if k not in RESUME_MAY_CHANGE and k in logged
            and norm(k, logged[k]) != norm(k, str(v)[:6000])]


def run_params(cfg: TrainConfig, name: str, manifest: mf.Manifest) -> dict[str, Any]:
    """A training run's MLflow params: its whole config (paths resolved, so that a resume
    from another directory compares what they point at), its name and the data's counts."""
    return {**asdict(cfg), "data": str(open_location(cfg.data)), "storage": storage_uri(cfg.storage),
            "name": name, "num_classes": manifest.num_classes,
            "train_images": manifest.splits["train"].images, "val_images": manifest.splits["val"].images}


def changes_since_start(client: Any, exp_id: str, name: str, params: dict[str, Any]) -> tuple[str | None, list[str]]:
    """The MLflow run named `name` (None if there is none) and each of `params` that
    differs from what it logged when it started: what a rerun of the same name would change."""
    run_id = tracking.find_run(client, exp_id, name)
    if run_id is None:
        return None, []
    return run_id, changed_settings(client.get_run(run_id).data.params, params)


def check_resume(client: Any, exp_id: str, name: str, params: dict[str, Any]) -> None:
    """Refuse to continue run `name` with other settings: the checkpoint would go on
    under a recipe its first epochs never had, while its MLflow params still show the old one."""
    run_id, changed = changes_since_start(client, exp_id, name, params)
    if run_id is None:
        return
    if changed:
        raise UserError(f"--name {name} resumes MLflow run {run_id}, which was started with other settings: "
                        f"{'; '.join(changed)}. Rerun with its settings (only {', '.join(sorted(RESUME_MAY_CHANGE))} "
                        "may change), or pass another --name for a new run")
    storage = str(params.get("storage", ""))
    logged = client.get_metric_history(run_id, "val_top1_err")
    run_dir = open_location(storage) / name
    if logged and not any(run_dir.glob("checkpoint_*")):
        raise UserError(f"--name {name} resumes MLflow run {run_id}, which logged {len(logged)} epoch(s), but "
                        f"{run_dir} holds no checkpoint to continue from: pass the --storage it was "
                        "started with, or another --name for a new run")


def fit(cfg: TrainConfig, *, tags: dict[str, str] | None = None,
        callbacks: list[Any] | None = None, cluster_share: float = 1.0, lock: bool = True,
        checked: tuple[Location, mf.Manifest] | None = None) -> TrainOutcome:
    """Train per `cfg` on the connected Ray cluster; resumes a run of the same name.

    A Tune trial passes its MLflow parent in `tags`, a `TuneReportCallback` in
    `callbacks`, the share of the cluster each concurrent trial may size itself to, and
    `lock=False`: its sweep's lock covers it, and a trial killed on another node would
    leave a lock that no later trial there could prove stale. `checked` is `preflight`'s
    result where the caller ran it already (it reads every shard's footer)."""
    data_root, manifest = checked or preflight(cfg)
    name = cfg.name or default_name("alexnet")
    with run_lock(cfg.storage, name, "training run") if lock else nullcontext():
        return _fit_locked(cfg, name, data_root, manifest, tags, callbacks, cluster_share)


def _fit_locked(cfg: TrainConfig, name: str, data_root: Location, manifest: mf.Manifest, tags: dict[str, str] | None,
                callbacks: list[Any] | None, cluster_share: float) -> TrainOutcome:
    uri = tracking.tracking_uri()
    client = tracking.client()
    exp_id = tracking.experiment_id(client, cfg.experiment)
    params = run_params(cfg, name, manifest)
    check_resume(client, exp_id, name, params)
    cluster = {k: v * cluster_share for k, v in ray.cluster_resources().items()}
    placement = plan_placement(cfg, cluster)
    run_id, resumed = tracking.start_or_resume_run(client, exp_id, name, params, tags)
    print(f"[train] MLflow run {run_id} ({'resumed' if resumed else 'new'}) '{name}' in "
          f"experiment '{cfg.experiment}' at {uri}", flush=True)
    device = "GPU" if placement.use_gpu else "CPU"
    print(f"[train] {cfg.workers} worker(s) on {device}, {placement.cpus_per_worker:g} CPU each; "
          f"{placement.data.augment_actors} augmentation actor(s) of {placement.data.augment_cpus:g} CPU; "
          f"JPEGs decoded {f'by the workers, on their {device}s' if placement.decode_on_device else 'by the actors'}",
          flush=True)

    clock, _clock_alive = start_epoch_clock()  # tells the augmentation actors the epoch, for their crops
    trainer = TorchTrainer(
        train_func_per_worker,
        train_loop_config={
            "train": asdict(cfg), "manifest": asdict(manifest), "data_root": str(data_root),
            "tracking_uri": uri, "run_id": run_id, "data_resources": asdict(placement.data),
            "epoch_clock": clock, "decode_on_device": placement.decode_on_device,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.workers, use_gpu=placement.use_gpu,
            resources_per_worker={"CPU": placement.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_uri(cfg.storage),
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2), callbacks=callbacks,
            worker_runtime_env={} if placement.use_gpu else {"env_vars": network_process_env()}),
        datasets={"train": train_dataset(str(data_root), manifest, placement.data, seed=cfg.seed, clock=clock,
                                         decode_on_device=placement.decode_on_device, pca_std=cfg.pca_std,
                                         crop_flip=cfg.crop_flip)},
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
        user_error = worker_user_error(e)
        if user_error is not None:  # e.g. a refused checkpoint on resume: one line, not Ray's traceback
            raise UserError(str(user_error)) from e
        raise
    outcome = record_result(client, run_id, name, result, data_root)
    client.set_terminated(run_id, "FINISHED")
    return outcome


def worker_user_error(error: BaseException) -> UserError | None:
    """The UserError a training worker raised, from inside Ray Train's failure (which
    maps each failed rank to its exception, itself a RayTaskError that is also the
    original class)."""
    seen: list[BaseException] = [error]
    while seen:
        e = seen.pop()
        if isinstance(e, UserError):
            cause = getattr(e, "cause", None)  # a RayTaskError's original exception: its message alone
            return cause if isinstance(cause, UserError) else e
        seen += [x for x in (e.__cause__, e.__context__) if x is not None]
        seen += list(getattr(e, "worker_failures", {}).values())
    return None


def record_result(client: Any, run_id: str, name: str, result: ray.train.Result,
                  data_root: Location) -> TrainOutcome:
    """Artifacts: the final checkpoint, the model as an MLflow PyTorch model, the class
    list, the training curves and the first layer's kernels (the paper's figure 3)."""
    with tempfile.TemporaryDirectory() as tmp:  # a local copy: the data may be in an object store
        classes = Path(tmp) / mf.CLASSES
        classes.write_bytes((data_root / mf.CLASSES).read_bytes())
        client.log_artifact(run_id, str(classes))
    checkpoint_dir = None
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as d:
            state = ckpt.load(os.path.join(d, CHECKPOINT_FILE), f"run {run_id} ('{name}')")
            model = ckpt.load_weights(models.from_model_args(state["model_args"]), state["model"],
                                      f"run {run_id} ('{name}')")
            client.log_artifacts(run_id, d, "checkpoint")  # only a checkpoint that loads is logged
        checkpoint_dir = result.checkpoint.path
        tracking.log_pytorch_model(run_id, model, metadata={
            "input": "float32 NCHW 224x224, RGB in 0-255 minus rgb_mean", "rgb_mean": state.get("rgb_mean"),
            "arch": state["model_args"].get("arch", "alexnet"), "model_args": state["model_args"]})
        with tempfile.TemporaryDirectory() as tmp:
            for png in (training_curves(state["history"], Path(tmp) / "training_curves.png", title=name),
                        conv1_kernels(model, Path(tmp) / "conv1_kernels.png", title=f"{name}: first-layer kernels")):
                client.log_artifact(run_id, str(png))
    metrics = {k: float(v) for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
    return TrainOutcome(run_id, name, metrics, checkpoint_dir)
