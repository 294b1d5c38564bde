"""The paper's ensemble (section 6): several networks that differ only in their seed,
their predictions averaged.

Ray Data streams the validation shards through actors that hold every member (on a GPU
when they have one) and return each member's scores for each image; the driver merges
them, counts each member's and each prefix's errors (k = 1..N members), and keeps only
the merged top-5 per image, so memory does not grow with the number of classes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import ray
import torch
from ray.data import ActorPoolStrategy, Dataset

from alexnet.data.manifest import Manifest
from alexnet.data.pipeline import DataResources, eval_dataset, plan_resources
from alexnet.engine import predict
from alexnet.members import Member
from alexnet.memory import keep_network_memory, network_process_env
from alexnet.metrics import error_percent, topk_correct
from alexnet.store import read_parquet

Merge = Literal["prob", "logits"]

# ILSVRC-2012 validation error (%), the paper's Table 2: the rows an ensemble is read against.
PAPER_TABLE2 = [("paper: 1 CNN", 40.7, 18.2), ("paper: 5 CNNs", 38.1, 16.4), ("paper: 7 CNNs*", 36.7, 15.4)]


class MemberScorer:
    """Holds every member's network (on the GPU when there is one) and returns each
    member's scores for a batch: probabilities, or logits for --merge logits, shape
    (B, N, classes). A Ray Data actor, or called in-process by jobs/predict.py."""

    def __init__(self, members: list[Any], logits: bool, threads: int = 0) -> None:
        if members and isinstance(members[0], ray.ObjectRef):  # inside a list, so Ray hands over the reference
            members = ray.get(members[0])
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            keep_network_memory()
            if threads:
                torch.set_num_threads(threads)  # Ray sets 1 for actors with fractional CPUs
        self.models = [m.build().to(self.device) for m in members]
        self.means = [torch.tensor(m.rgb_mean, dtype=torch.float32, device=self.device) for m in members]
        self.logits = logits

    def scores(self, images: np.ndarray) -> np.ndarray:
        batch = {"image": torch.from_numpy(images)}
        on_gpu = self.device.type == "cuda"
        scores = [predict(m, batch, self.device, mean, amp=on_gpu, channels_last=on_gpu, logits=self.logits)
                  for m, mean in zip(self.models, self.means, strict=True)]
        return torch.stack(scores, 1).cpu().numpy()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"index": batch["index"], "label": batch["label"], "valid": batch["valid"],
                "scores": self.scores(batch["image"])}


def inference_resources(cluster: dict[str, float], device: str) -> tuple[int, float, float, DataResources]:
    """(actors, CPUs and GPUs per actor, the rest of the pipeline's share): one actor per
    GPU; on CPUs one actor with most of the cores, leaving some for reading and decoding."""
    cpus, gpus = cluster.get("CPU", 1.0), cluster.get("GPU", 0.0)
    if device == "cuda" or (device == "auto" and gpus >= 1):
        actors = max(1, int(gpus))
        return actors, 1.0, 1.0, plan_resources(cpus, actors)
    actor_cpus = max(0.5, cpus - 0.75) if cpus <= 8 else cpus - 2
    return 1, actor_cpus, 0.0, plan_resources(cpus, actor_cpus)


def score(data_root: str, manifest: Manifest, members: list[Member], merge: Merge, crop: str,
          batch_size: int, device: str = "auto", split: str = "val") -> Dataset:
    actors, actor_cpus, actor_gpus, res = inference_resources(ray.cluster_resources(), device)
    ds = eval_dataset(data_root, manifest, res, crop, split=split)  # type: ignore[arg-type]
    return ds.map_batches(
        MemberScorer,
        fn_constructor_kwargs={"members": [ray.put(members)], "logits": merge == "logits",
                               "threads": max(1, round(actor_cpus))},
        compute=ActorPoolStrategy(size=actors), num_cpus=actor_cpus, num_gpus=actor_gpus,
        batch_size=batch_size, batch_format="numpy",
        runtime_env={} if actor_gpus else {"env_vars": network_process_env()})  # whichever thread scores


def member_probs(scores: torch.Tensor, merge: Merge) -> torch.Tensor:
    return scores.softmax(-1) if merge == "logits" else scores


def merged(scores: torch.Tensor, merge: Merge) -> torch.Tensor:
    """(B, k, classes) member scores -> (B, classes) ensemble probabilities."""
    return as_probs(scores.mean(1), merge)


def as_probs(mean_scores: torch.Tensor, merge: Merge) -> torch.Tensor:
    return mean_scores.softmax(-1) if merge == "logits" else mean_scores


@dataclass
class Tally:
    """Counts that become errors: per member, and per prefix of the ensemble (k = 1..N)."""

    members: int
    images: int = 0
    member_correct: torch.Tensor = field(init=False)  # (N, 2): top-1, top-5
    prefix_correct: torch.Tensor = field(init=False)  # (N, 2): the first k members merged
    predictions: list[pd.DataFrame] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.member_correct = torch.zeros(self.members, 2, dtype=torch.float64)
        self.prefix_correct = torch.zeros(self.members, 2, dtype=torch.float64)

    def add(self, batch: dict[str, np.ndarray], merge: Merge) -> None:
        scores = torch.from_numpy(np.asarray(batch["scores"], dtype=np.float32))
        label, valid = torch.from_numpy(batch["label"]), torch.from_numpy(batch["valid"])
        probs, running = member_probs(scores, merge), scores.cumsum(1)
        for i in range(self.members):
            self.member_correct[i] += topk_correct(probs[:, i], label, mask=valid)
            prefix = as_probs(running[:, i] / (i + 1), merge)  # the first i + 1 members merged
            self.prefix_correct[i] += topk_correct(prefix, label, mask=valid)
        ensemble = prefix
        top = ensemble.topk(min(5, ensemble.shape[1]), dim=1)
        top_idx = torch.where(valid.view(-1, 1), top.indices, torch.full_like(top.indices, -1))  # undecodable
        top_p = torch.where(valid.view(-1, 1), top.values, torch.zeros_like(top.values))
        self.predictions.append(pd.DataFrame({
            "index": batch["index"], "label": batch["label"],
            "top5": list(top_idx.numpy()), "top5_prob": list(top_p.numpy())}))
        self.images += len(label)

    def errors(self, skipped: int = 0) -> dict[str, Any]:
        """Errors over every image of the split: the `skipped` ones that preparation could
        not decode count as wrong, like rows that fail to decode now."""
        err = lambda c: [error_percent(float(v), self.images + skipped) for v in c]  # noqa: E731
        return {"members": [err(c) for c in self.member_correct], "prefixes": [err(c) for c in self.prefix_correct]}


def tally(batches: Iterable[dict[str, np.ndarray]], members: int, merge: Merge) -> Tally:
    t = Tally(members)
    for batch in batches:
        t.add(batch, merge)
    return t


def image_ids(data_root: str, manifest: Manifest, split: str = "val") -> pd.DataFrame:
    """index -> image_id (the source file's name without extension, e.g. ILSVRC2012_val_00000001)."""
    table = read_parquet(manifest.shard_paths(data_root, split), columns=["index", "path"]).to_pandas()
    table["image_id"] = [os.path.splitext(os.path.basename(p))[0] for p in table["path"]]
    return table[["index", "image_id"]]


def predictions_frame(t: Tally, ids: pd.DataFrame) -> pd.DataFrame:
    """One row per validation image: image_id, label, top5 (most probable first), top5_prob."""
    preds = pd.concat(t.predictions, ignore_index=True).merge(ids, on="index", how="left")
    preds = preds.sort_values("index", ignore_index=True)
    preds["top5"] = preds["top5"].map(lambda a: [int(v) for v in a])
    preds["top5_prob"] = preds["top5_prob"].map(lambda a: [float(v) for v in a])
    return preds[["image_id", "label", "top5", "top5_prob"]]


def write_predictions(preds: pd.DataFrame, path: str | Path) -> Path:
    preds.to_parquet(path, index=False)
    return Path(path)


def report_table(members: list[Member], errors: dict[str, Any], merge: Merge, crop: str) -> str:
    """Members, the ensemble and the paper's Table 2 side by side, as Markdown."""
    rows = [(f"member {i + 1}: {m.name} ({m.arch}, seed {m.seed})", *errors["members"][i])
            for i, m in enumerate(members)]
    how = "probabilities" if merge == "prob" else "logits"
    rows.append((f"**ensemble of {len(members)}** ({how} averaged, {crop} crop)", *errors["prefixes"][-1]))
    rows += [(f"{name} (ILSVRC-2012 val)", top1, top5) for name, top1, top5 in PAPER_TABLE2]
    lines = ["| model | top-1 err % | top-5 err % |", "|---|---:|---:|"]
    lines += [f"| {name} | {top1:.2f} | {top5:.2f} |" for name, top1, top5 in rows]
    return "\n".join(lines)
