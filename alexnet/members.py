"""Trained networks as MLflow keeps them: find the runs, load their weights and class lists.

A training run logs ``checkpoint/checkpoint.pt`` (weights and the arguments that rebuild
the network) and ``classes.json``. Ensembles and prediction start from run ids, the
parent of a seed sweep, or a tag; whatever cannot be used is refused by name.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from alexnet import checkpoint as ckpt
from alexnet import models
from alexnet.data.manifest import IMAGENET_MEAN
from alexnet.errors import UserError
from alexnet.tracking import PARENT_TAG, filter_quote

CHECKPOINT_ARTIFACT = "checkpoint/checkpoint.pt"
CLASSES_ARTIFACT = "classes.json"


@dataclass
class Member:
    run_id: str
    name: str
    seed: int
    classes: list[str]
    model_args: dict[str, Any]
    weights: dict[str, torch.Tensor]
    rgb_mean: list[float]  # of the training set: the network's inputs are centred on it

    @property
    def arch(self) -> str:
        return self.model_args.get("arch", "alexnet")  # checkpoints from before --arch are AlexNets

    def build(self) -> torch.nn.Module:
        """The member's own network (its checkpoint's `model_args` name it), with its weights:
        an ensemble may mix networks."""
        model = models.from_model_args(self.model_args)
        ckpt.load_weights(model, self.weights, f"member {self.run_id} ('{self.name}')")
        return model.eval()


def describe(client: MlflowClient, run_id: str) -> str:
    try:
        return f"member {run_id} ('{client.get_run(run_id).info.run_name}')"
    except MlflowException:
        return f"member {run_id}"


def load_member(client: MlflowClient, run_id: str) -> Member:
    """Weights and classes of one training run, or a UserError naming the run."""
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        raise UserError(f"member {run_id}: no such MLflow run at {client.tracking_uri}; "
                        "check the run id and MLFLOW_TRACKING_URI") from e
    label = describe(client, run_id)
    logged = {a.path for a in client.list_artifacts(run_id, "checkpoint")}
    if CHECKPOINT_ARTIFACT not in logged:
        raise UserError(f"{label}: no {CHECKPOINT_ARTIFACT} artifact (status {run.info.status}); "
                        "finish its training (rerun it with the same --name) or leave it out")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            classes_path = client.download_artifacts(run_id, CLASSES_ARTIFACT, tmp)
        except (MlflowException, OSError) as e:
            raise UserError(f"{label}: no {CLASSES_ARTIFACT} artifact; it was not logged by "
                            "jobs/train.py, so its labels cannot be checked") from e
        classes = json.loads(Path(classes_path).read_text())
        state = ckpt.load(client.download_artifacts(run_id, CHECKPOINT_ARTIFACT, tmp), label)
    check_network(state, label)
    return Member(run_id=run_id, name=run.info.run_name or run_id, seed=int(run.data.params.get("seed", -1)),
                  classes=list(classes), model_args=state["model_args"], weights=state["model"],
                  rgb_mean=list(state.get("rgb_mean") or IMAGENET_MEAN))


def check_network(state: dict[str, Any], label: str) -> None:
    """Refuse a checkpoint whose weights do not fit its network here, on the driver: the
    scoring actors that build it would only report a traceback. The network is built on
    the meta device, so the check allocates no weights."""
    args = state["model_args"]
    try:
        with torch.device("meta"):
            model = models.from_model_args(args)
    except (TypeError, ValueError) as e:
        raise UserError(f"{label}: its model_args {args!r} do not describe a network this version builds ({e}); "
                        "it was not written by jobs/train.py, leave it out") from e
    ckpt.check_weights(model, state["model"], label)


def check_classes(members: list[Member], classes: list[str], data: str) -> None:
    """Every member must name the same classes, in the same order, as the data."""
    for m in members:
        if m.classes != classes:
            diff = next((i for i, (a, b) in enumerate(zip(m.classes, classes, strict=False)) if a != b),
                        min(len(m.classes), len(classes)))
            raise UserError(f"member {m.run_id} ('{m.name}'): its class list ({len(m.classes)} classes) differs "
                            f"from {data}/classes.json ({len(classes)} classes) at index {diff}; it was trained "
                            "on other data: leave it out")


def finished_runs(client: MlflowClient, experiment_ids: list[str], filter_string: str) -> list[Any]:
    runs = client.search_runs(experiment_ids, filter_string=filter_string + " and attributes.status = 'FINISHED'",
                              max_results=10_000, order_by=["attributes.start_time ASC"])
    return sorted(runs, key=lambda r: int(r.data.params.get("seed", 0)))


def children_of(client: MlflowClient, parent_run_id: str) -> list[str]:
    """The finished trials of a sweep (a seed sweep: one per seed), in seed order."""
    try:
        parent = client.get_run(parent_run_id)
    except MlflowException as e:
        raise UserError(f"--parent {parent_run_id}: no such MLflow run at {client.tracking_uri}") from e
    runs = finished_runs(client, [parent.info.experiment_id],
                         f"tags.`{PARENT_TAG}` = {filter_quote(parent_run_id, '--parent')}")
    return [r.info.run_id for r in runs]


def tagged(client: MlflowClient, experiment: str, tag: str) -> list[str]:
    """Finished runs in `experiment` with the tag KEY=VALUE."""
    key, _, value = tag.partition("=")
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise UserError(f"--member-experiment {experiment!r}: no such MLflow experiment at {client.tracking_uri}")
    runs = finished_runs(client, [exp.experiment_id], f"tags.`{key}` = {filter_quote(value, '--tag')}")
    return [r.info.run_id for r in runs]
