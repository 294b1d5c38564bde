"""Ray Tune sweeps over the training job.

Each trial is a Tune function that builds and fits a `TorchTrainer` through
`alexnet.trainer.fit` (Ray 2.60's Tune-over-Train pattern), so a trial trains exactly as
`jobs/train.py` does. A `TuneReportCallback` forwards every epoch's metrics to Tune, where
ASHA may stop weak trials. In MLflow the sweep is one parent run; each trial is a child
run (the standard ``mlflow.parentRunId`` tag) and the parent records the best trial.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Collection
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY, TuneReportCallback

from alexnet import tracking
from alexnet.config import SweepConfig, TrainConfig
from alexnet.errors import UserError
from alexnet.plots import sweep_curves
from alexnet.store import open_location
from alexnet.trainer import changed_settings, default_name, fit, run_lock, storage_uri

PARENT_TAG = tracking.PARENT_TAG
TRIAL_TAG = "alexnet.trial_id"
KIND_TAG = "alexnet.sweep_kind"  # "search" or "seeds"
TRIAL_CPU = 0.01  # the trial actor only waits on its TorchTrainer; the workers hold the CPUs


@dataclass
class TrialOutcome:
    trial_id: str
    lr: float
    weight_decay: float
    seed: int
    status: str  # FINISHED, STOPPED (by ASHA), FAILED, UNFINISHED (the sweep was interrupted) or NOT_RUN
    epochs: int
    val_top1_err: float
    val_top5_err: float
    val_loss: float
    checkpoint: str | None
    run_id: str | None
    error: str = ""


@dataclass
class SweepOutcome:
    parent_run_id: str
    name: str
    trials: list[TrialOutcome]
    best: TrialOutcome | None
    interrupted: bool = False  # Ctrl-C: unfinished trials go on when the sweep is rerun


def base_train_config(cfg: SweepConfig, train: TrainConfig) -> TrainConfig:
    """What every trial shares: the training config with the sweep's data, epochs,
    workers and experiment, and with paths made absolute (trials run elsewhere)."""
    return replace(train, data=str(open_location(cfg.data)), epochs=cfg.epochs or train.epochs,
                   workers=cfg.workers_per_trial or train.workers, experiment=cfg.experiment,
                   storage=storage_uri(cfg.storage), name="")


def search_space(cfg: SweepConfig, base: TrainConfig) -> dict[str, Any]:
    if cfg.seed_list:
        return {"lr": base.lr, "weight_decay": base.weight_decay, "seed": tune.grid_search(list(cfg.seed_list))}
    return {
        "lr": tune.grid_search(list(cfg.lr_grid)) if cfg.lr_grid else tune.loguniform(*cfg.lr_range),
        "weight_decay": (tune.grid_search(list(cfg.weight_decay_grid)) if cfg.weight_decay_grid
                         else tune.loguniform(*cfg.weight_decay_range)),
        "seed": tune.randint(0, 10_000),
    }


def concurrency(cfg: SweepConfig, workers: int, cluster: dict[str, float]) -> int:
    """GPU trials run side by side; CPU trials one at a time, since each one already
    uses every core (and two would leave Ray Data no CPU)."""
    if cfg.max_concurrent:
        return cfg.max_concurrent
    return max(1, int(cluster.get("GPU", 0) // workers))


class EpochsToTune(TuneReportCallback):
    """Forwards each epoch's metrics to Tune, except the last one: the trial reports that
    itself once `fit` has recorded the run, because Tune ends a trial (killing its actor)
    as soon as it sees the final epoch, which would cut the recording short."""

    def __init__(self, last_epoch: int) -> None:
        super().__init__()
        self.last_epoch = last_epoch

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if metrics and metrics[0].get("epoch", 0) < self.last_epoch:
            super().after_report(run_context, metrics, checkpoint)


def run_trial(params: dict[str, Any], base: dict[str, Any], parent_run_id: str, sweep_name: str,
              cluster_share: float) -> None:
    """One trial: `jobs/train.py`'s training with this trial's lr, weight decay and seed,
    logged as a child of the sweep's run. A restored sweep resumes the trial's own Ray
    Train run and MLflow run, since both are found by the trial's name."""
    trial_id = tune.get_context().get_trial_id()
    cfg = TrainConfig(**{**base, "lr": float(params["lr"]), "weight_decay": float(params["weight_decay"]),
                         "seed": int(params["seed"]), "name": f"{sweep_name}-{trial_id}"})
    outcome = fit(cfg, tags={PARENT_TAG: parent_run_id, TRIAL_TAG: trial_id},
                  callbacks=[EpochsToTune(cfg.epochs)], cluster_share=cluster_share, lock=False)
    tune.report({**outcome.metrics, CHECKPOINT_PATH_KEY: outcome.checkpoint_dir})


def check_trusted(path: str) -> None:
    """Ray Tune restores a sweep by unpickling its state files, so they must be this
    user's own: a local sweep folder, or a file in it, that another user owns or may write
    is refused (an object store's --storage is trusted as configured: see
    docs/troubleshooting.md)."""
    if "://" in path:
        return
    for p in [Path(path), *Path(path).glob("*.pkl")]:
        st = p.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            raise UserError(f"sweep state {p} is owned by uid {st.st_uid} or writable by others (mode "
                            f"{st.st_mode & 0o777:o}); resuming would unpickle it, which could run its writer's "
                            "code. Resume only your own sweeps, or pass another --name")


def build_tuner(cfg: SweepConfig, base: TrainConfig, name: str, parent_run_id: str) -> tune.Tuner:
    concurrent = concurrency(cfg, base.workers, ray.cluster_resources())
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=asdict(base), parent_run_id=parent_run_id, sweep_name=name,
                             cluster_share=1.0 / concurrent),
        {"CPU": TRIAL_CPU})
    path = f"{storage_uri(base.storage).rstrip('/')}/{name}"  # a URI stays a URI
    if tune.Tuner.can_restore(path):
        check_trusted(path)
        print(f"[tune] resuming sweep '{name}' from {path}", flush=True)
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False)
    scheduler = None
    if cfg.scheduler == "asha" and not cfg.seed_list:
        scheduler = tune.schedulers.ASHAScheduler(
            time_attr="epoch", max_t=base.epochs, grace_period=min(cfg.grace_period, base.epochs),
            reduction_factor=cfg.reduction_factor)
    return tune.Tuner(
        trainable,
        param_space=search_space(cfg, base),
        tune_config=tune.TuneConfig(metric=cfg.metric, mode="min", scheduler=scheduler,
                                    num_samples=1 if cfg.seed_list else cfg.num_samples,
                                    max_concurrent_trials=concurrent,
                                    trial_dirname_creator=lambda trial: trial.trial_id),
        run_config=tune.RunConfig(name=name, storage_path=base.storage, verbose=1,
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )


def sweep(cfg: SweepConfig, train: TrainConfig, lock: bool = True) -> SweepOutcome:
    """Run (or resume) the sweep named `cfg.name` on the connected Ray cluster, holding
    the lock on its name (which covers its trials, named after it) while it runs;
    `lock=False` where the caller holds it already."""
    name = cfg.name or default_name("sweep")
    with run_lock(cfg.storage, name, "sweep") if lock else nullcontext():
        return _sweep_locked(cfg, train, name)


def check_sweep_resume(client: MlflowClient, exp_id: str, name: str, cfg: SweepConfig, base: TrainConfig) -> None:
    """Refuse to resume sweep `name` with other training settings or another --metric,
    before any trial starts (each unfinished trial would otherwise fail on its own when it
    resumes, and Tune restores its scheduler as it was). The settings each trial draws (lr,
    weight decay, seed) and its name are the sweep's, not the user's, and are not compared."""
    run_id = tracking.find_run(client, exp_id, name)
    if run_id is None:
        return
    params = client.get_run(run_id).data.params
    logged = {k.removeprefix("train."): v for k, v in params.items() if k.startswith("train.")}
    drawn = {"lr", "weight_decay", "seed", "name"}
    changed = changed_settings(logged, {k: v for k, v in asdict(base).items() if k not in drawn})
    if "metric" in params and params["metric"] != cfg.metric:
        changed.append(f"--metric {params['metric']} -> {cfg.metric}")
    if changed:
        raise UserError(f"--name {name} resumes sweep run {run_id}, which was started with other training settings: "
                        f"{'; '.join(changed)}. Rerun with its settings, or pass another --name for a new sweep")


def _sweep_locked(cfg: SweepConfig, train: TrainConfig, name: str) -> SweepOutcome:
    base = base_train_config(cfg, train)
    client = tracking.client()
    exp_id = tracking.experiment_id(client, cfg.experiment)
    check_sweep_resume(client, exp_id, name, cfg, base)
    kind = "seeds" if cfg.seed_list else "search"
    params = {**asdict(cfg), "name": name, **{f"train.{k}": v for k, v in asdict(base).items()}}
    parent_run_id, resumed = tracking.start_or_resume_run(client, exp_id, name, params, {KIND_TAG: kind})
    print(f"[tune] MLflow parent run {parent_run_id} ({'resumed' if resumed else 'new'}) '{name}' in "
          f"experiment '{cfg.experiment}' at {client.tracking_uri}", flush=True)
    try:
        grid = build_tuner(cfg, base, name, parent_run_id).fit()
    except BaseException:
        client.set_terminated(parent_run_id, "FAILED")
        raise
    unfinished = unfinished_trials(grid)
    trials = [trial_outcome(r, base.epochs, unfinished) for r in grid]
    attach_runs(client, exp_id, parent_run_id, trials)
    if unfinished:  # Ctrl-C: Tune saved its state; the best is chosen when every trial is done
        print(f"[tune] sweep '{name}' was interrupted with {len(unfinished)} trial(s) unfinished:\n"
              f"{trials_table(trials, cfg.metric)}\n[tune] rerun the same command (--name {name}) to resume them",
              flush=True)
        client.set_terminated(parent_run_id, "KILLED")
        return SweepOutcome(parent_run_id, name, trials, None, interrupted=True)
    best = min((t for t in trials if t.status in ("FINISHED", "STOPPED") and math.isfinite(getattr(t, cfg.metric))),
               key=lambda t: getattr(t, cfg.metric), default=None)
    record_sweep(client, parent_run_id, name, trials, best, grid, cfg.metric)
    client.set_terminated(parent_run_id, "FINISHED" if best is not None else "FAILED")
    return SweepOutcome(parent_run_id, name, trials, best)


def unfinished_trials(grid: tune.ResultGrid) -> set[str]:
    """The ids of the trials a stopped sweep left to do: only Ctrl-C (or SIGUSR1) leaves
    any. Read from the state Tune saved, where they are still pending: in memory Tune marks
    them terminated as it shuts down, like the finished ones and those ASHA stopped."""
    analysis = tune.ExperimentAnalysis(grid.experiment_path, storage_filesystem=grid.filesystem)
    return {t.trial_id for t in analysis.trials if t.status not in ("TERMINATED", "ERROR")}


def trial_outcome(result: Any, epochs: int, unfinished: Collection[str] = ()) -> TrialOutcome:
    config, metrics = result.config or {}, result.metrics or {}
    done = int(metrics.get("epoch", 0))
    trial_id = Path(result.path).name  # see trial_dirname_creator in build_tuner
    if result.error is not None:
        status = "FAILED"
    elif trial_id in unfinished:
        status = "UNFINISHED"
    elif not metrics:
        status = "NOT_RUN"
    else:
        status = "FINISHED" if done >= epochs else "STOPPED"
    error = str(result.error).strip().splitlines()[-1][:500] if result.error is not None else ""
    return TrialOutcome(
        trial_id=trial_id,
        lr=float(config.get("lr", float("nan"))), weight_decay=float(config.get("weight_decay", float("nan"))),
        seed=int(config.get("seed", -1)), status=status, epochs=done,
        val_top1_err=float(metrics.get("val_top1_err", float("nan"))),
        val_top5_err=float(metrics.get("val_top5_err", float("nan"))),
        val_loss=float(metrics.get("val_loss", float("nan"))),
        checkpoint=metrics.get(CHECKPOINT_PATH_KEY), run_id=None, error=error)


def attach_runs(client: MlflowClient, exp_id: str, parent_run_id: str, trials: list[TrialOutcome]) -> None:
    """Find each trial's child run and settle its status: a trial that ASHA stopped, or
    whose actor died before `fit` could record a failure, is still RUNNING there."""
    children = client.search_runs(
        [exp_id], filter_string=f"tags.`{PARENT_TAG}` = {tracking.filter_quote(parent_run_id)}", max_results=10_000)
    by_trial = {r.data.tags.get(TRIAL_TAG): r for r in children}
    for t in trials:
        run = by_trial.get(t.trial_id)
        if run is None:
            continue
        t.run_id = run.info.run_id
        if math.isnan(t.lr):  # a restored sweep keeps no config for its failed trials
            t.lr, t.weight_decay = float(run.data.params["lr"]), float(run.data.params["weight_decay"])
            t.seed = int(run.data.params["seed"])
        if t.status == "STOPPED":
            client.set_tag(t.run_id, "alexnet.stopped_early", f"ASHA stopped it after epoch {t.epochs}")
            client.set_terminated(t.run_id, "KILLED")
        elif t.status == "FAILED":
            client.set_tag(t.run_id, "alexnet.error", t.error or "trial failed")
            client.set_terminated(t.run_id, "FAILED")


def record_sweep(client: MlflowClient, parent_run_id: str, name: str, trials: list[TrialOutcome],
                 best: TrialOutcome | None, grid: Any, metric: str = "val_top1_err") -> None:
    """The parent run's summary: the best trial (metrics, params and, since params cannot
    change when a resumed sweep finds a better trial, the same as tags), every trial as
    a CSV, and every trial's validation curve as a plot."""
    print(f"[tune] sweep '{name}': {len(trials)} trial(s)\n{trials_table(trials, metric)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "trials.csv"
        pd.DataFrame([asdict(t) for t in trials]).to_csv(table, index=False)
        client.log_artifact(parent_run_id, str(table))
        curves = {f"lr {t.lr:.3g}, wd {t.weight_decay:.2g}, seed {t.seed}": r.metrics_dataframe
                  for t, r in zip(trials, grid, strict=True)
                  if r.metrics_dataframe is not None and "val_top1_err" in r.metrics_dataframe}
        if curves:
            client.log_artifact(parent_run_id, str(sweep_curves(curves, Path(tmp) / "sweep_curves.png", name)))
    if best is None:
        print("[tune] no trial finished an epoch; see the errors above", flush=True)
        return
    now = int(time.time() * 1000)
    values = {"best_lr": best.lr, "best_weight_decay": best.weight_decay, "best_seed": best.seed,
              "best_run_id": best.run_id or "", "best_checkpoint": best.checkpoint or ""}
    logged = client.get_run(parent_run_id).data.params
    client.log_batch(
        parent_run_id,
        metrics=[Metric(f"best_{k}", getattr(best, k), now, 0) for k in ("val_top1_err", "val_top5_err", "val_loss")
                 if math.isfinite(getattr(best, k))],
        params=[Param(k, str(v)) for k, v in values.items() if k not in logged],
        tags=[RunTag(f"alexnet.{k}", str(v)) for k, v in values.items()])
    print(f"[tune] best trial {best.trial_id}: val top-1 error {best.val_top1_err:.2f}%, top-5 "
          f"{best.val_top5_err:.2f}%, loss {best.val_loss:.4f} with lr {best.lr:.4g}, weight decay "
          f"{best.weight_decay:.4g}, seed {best.seed}\n[tune] best checkpoint: {best.checkpoint}\n"
          f"[tune] best MLflow run: {best.run_id}; parent run: {parent_run_id}", flush=True)


def trials_table(trials: list[TrialOutcome], metric: str = "val_top1_err") -> str:
    """Every trial, best first by `metric` (the sweep's --metric)."""
    header = (f"{'trial':<14}{'lr':>10}{'wd':>10}{'seed':>6}  {'status':<11}{'epochs':>6}{'top-1 %':>9}"
              f"{'top-5 %':>9}{'loss':>8}")
    rows = [f"{t.trial_id:<14}{t.lr:>10.4g}{t.weight_decay:>10.3g}{t.seed:>6}  {t.status:<11}{t.epochs:>6}"
            f"{t.val_top1_err:>9.2f}{t.val_top5_err:>9.2f}{t.val_loss:>8.3f}" + (f"  {t.error}" if t.error else "")
            for t in sorted(trials, key=lambda t: (math.isnan(getattr(t, metric)), getattr(t, metric)))]
    return "\n".join([header, *rows])
