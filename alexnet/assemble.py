"""The driver side of an ensemble: get the members (train them with a seed sweep, or
gather them from MLflow), score the validation set with all of them, record one MLflow
run that links to every member and holds the merged predictions."""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from alexnet import members as mb
from alexnet import tracking
from alexnet.config import EnsembleConfig, SweepConfig, train_config_for
from alexnet.data import manifest as mf
from alexnet.ensemble import image_ids, predictions_frame, report_table, score, tally, write_predictions
from alexnet.errors import UserError
from alexnet.plots import ensemble_curve
from alexnet.store import open_location
from alexnet.sweep import sweep
from alexnet.trainer import default_name, preflight

MEMBERS_TAG = "alexnet.members"


@dataclass
class EnsembleOutcome:
    run_id: str
    member_run_ids: list[str]
    member_errors: list[list[float]]  # [top-1, top-5] per member
    prefix_errors: list[list[float]]  # the first k members merged, k = 1..N
    report: str

    @property
    def top1(self) -> float:
        return self.prefix_errors[-1][0]

    @property
    def top5(self) -> float:
        return self.prefix_errors[-1][1]


def train_members(cfg: EnsembleConfig, name: str) -> str:
    """Seed mode of the sweep: one trial per seed 0..N-1. Returns the sweep's parent run."""
    train = train_config_for(cfg.data, cfg.train_preset, cfg.train_args)
    seeds = SweepConfig(data=cfg.data, epochs=cfg.epochs, seeds=f"0..{cfg.members - 1}", scheduler="fifo",
                        max_concurrent=cfg.max_concurrent, name=f"{name}-members", experiment=cfg.experiment,
                        storage=cfg.storage)
    outcome = sweep(seeds, train)
    failed = [t for t in outcome.trials if t.status != "FINISHED"]
    if failed:
        raise UserError(f"{len(failed)} of {cfg.members} members did not finish (seeds "
                        f"{', '.join(str(t.seed) for t in failed)}; see the table above); rerun the same command "
                        f"with --name {name} to resume them")
    return outcome.parent_run_id


def member_run_ids(client: MlflowClient, cfg: EnsembleConfig, name: str) -> list[str]:
    if cfg.runs:
        return list(cfg.runs)
    if cfg.train:
        ids = mb.children_of(client, train_members(cfg, name))
        source = "the trained seed sweep"
    elif cfg.parent:
        ids, source = mb.children_of(client, cfg.parent), f"--parent {cfg.parent}"
    else:
        ids, source = mb.tagged(client, cfg.member_experiment, cfg.tag), f"--tag {cfg.tag}"
    if len(ids) < cfg.members:
        raise UserError(f"{source} has {len(ids)} finished member run(s) but --members asks for {cfg.members}; "
                        "lower --members or train more")
    return ids[: cfg.members]


@dataclass
class Checked:
    """What `check` found, for `assemble` to go on from without asking again."""

    data_root: Path
    manifest: mf.Manifest
    classes: list[str]
    name: str
    members: list[mb.Member] | None  # None with --train: they exist once trained


def check(cfg: EnsembleConfig) -> Checked:
    """Everything that needs no Ray, so that a mistake is reported before Ray starts: the
    validation shards, the tracking server and, unless they are still to be trained, the
    members (runs, checkpoints, class lists); with --train, the training flags and data."""
    data_root = open_location(cfg.data)
    manifest, classes = mf.load(data_root, ("val",))
    tracking.check_reachable(tracking.tracking_uri())
    client = tracking.client()
    name = cfg.name or default_name("ensemble")
    if cfg.train:
        preflight(replace(train_config_for(cfg.data, cfg.train_preset, cfg.train_args), storage=cfg.storage))
        return Checked(data_root, manifest, classes, name, None)
    return Checked(data_root, manifest, classes, name, load_members(client, cfg, name, classes, data_root))


def load_members(client: MlflowClient, cfg: EnsembleConfig, name: str, classes: list[str],
                 data_root: Path) -> list[mb.Member]:
    ids = member_run_ids(client, cfg, name)
    members = [mb.load_member(client, run_id) for run_id in ids]
    mb.check_classes(members, classes, str(data_root))
    return members


def assemble(cfg: EnsembleConfig, checked: Checked | None = None) -> EnsembleOutcome:
    """Get the members, check them, score the validation split, record the ensemble run.
    `checked` is `check(cfg)`'s result when the job ran it before starting Ray."""
    checked = checked or check(cfg)
    data_root, manifest, name = checked.data_root, checked.manifest, checked.name
    client = tracking.client()
    members = checked.members
    if members is None:  # --train: the seed sweep trains them now
        members = load_members(client, cfg, name, checked.classes, data_root)
    ids = [m.run_id for m in members]
    print(f"[ensemble] {len(members)} member(s): "
          + ", ".join(f"{m.name} ({m.arch}, seed {m.seed})" for m in members), flush=True)

    started = time.perf_counter()
    ds = score(str(data_root), manifest, members, cfg.merge, cfg.eval_crop, cfg.batch_size, cfg.device)
    t = tally(ds.iter_batches(batch_size=cfg.batch_size, batch_format="numpy"), len(members), cfg.merge)
    print(f"[ensemble] scored {t.images} validation images with {len(members)} member(s) in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    errors = t.errors(manifest.splits["val"].skipped)
    report = report_table(members, errors, cfg.merge, cfg.eval_crop)
    print(report, flush=True)
    run_id = record(client, cfg, name, members, errors, report, predictions_frame(t, image_ids(str(data_root),
                                                                                            manifest)))
    return EnsembleOutcome(run_id, ids, errors["members"], errors["prefixes"], report)


def record(client: MlflowClient, cfg: EnsembleConfig, name: str, members: list[mb.Member],
           errors: dict[str, Any], report: str, preds: Any) -> str:
    """One run: members as params and tags (with links), each member's and each prefix's
    errors, the merged predictions, the report and the error-vs-members plot."""
    exp_id = tracking.experiment_id(client, cfg.experiment)
    links = "\n".join(f"- member {i + 1}: [{m.name}](#/experiments/{client.get_run(m.run_id).info.experiment_id}"
                      f"/runs/{m.run_id}) ({m.arch}, seed {m.seed})" for i, m in enumerate(members))
    run = client.create_run(exp_id, run_name=name, tags={
        tracking.RUN_NAME_TAG: name, MEMBERS_TAG: ",".join(m.run_id for m in members),
        "mlflow.note.content": f"Ensemble of {len(members)} networks.\n\n{links}\n\n{report}",
        **{f"alexnet.member_{i + 1}": m.run_id for i, m in enumerate(members)}})
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    ens_top1, ens_top5 = errors["prefixes"][-1]
    metrics = [Metric("ensemble_top1_err", ens_top1, now, 0), Metric("ensemble_top5_err", ens_top5, now, 0)]
    for i, (top1, top5) in enumerate(errors["members"]):
        metrics += [Metric(f"member_{i + 1}_top1_err", top1, now, 0), Metric(f"member_{i + 1}_top5_err", top5, now, 0)]
    for k, (top1, top5) in enumerate(errors["prefixes"], start=1):
        metrics += [Metric("ensemble_top1_err_by_members", top1, now, k),
                    Metric("ensemble_top5_err_by_members", top5, now, k)]
    params = {"members": len(members), "member_run_ids": ",".join(m.run_id for m in members),
              "merge": cfg.merge, "eval_crop": cfg.eval_crop, "data": cfg.data}
    params |= {f"ensemble.{k}": v for k, v in asdict(cfg).items() if f"ensemble.{k}" not in params}
    client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)[:6000]) for k, v in params.items()],
                     tags=[RunTag("alexnet.kind", "ensemble")])
    with tempfile.TemporaryDirectory() as tmp:
        client.log_artifact(run_id, str(write_predictions(preds, Path(tmp) / "predictions.parquet")))
        (Path(tmp) / "report.md").write_text(report + "\n")
        client.log_artifact(run_id, str(Path(tmp) / "report.md"))
        client.log_artifact(run_id, str(ensemble_curve(errors["prefixes"], Path(tmp) / "ensemble_by_members.png",
                                                       title=name)))
    client.set_terminated(run_id, "FINISHED")
    return run_id
