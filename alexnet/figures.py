"""The paper's figure 4 for a trained run or an ensemble (`jobs/figures.py`).

Left half: validation images with the network's five most probable classes, the true
class marked. Right half: validation images and the training images whose last hidden
layer is nearest in Euclidean distance ("If two images produce feature activation
vectors with a small Euclidean separation, we can say that the higher levels of the
neural network consider them to be similar", section 6.1). The last hidden layer is the
input of a network's last fully connected layer: AlexNet's 4096 fc7 activations (its
fc8 reads them), ResNet's pooled features, GoogLeNet's; LeNet-5's output layer is an RBF
layer, so its features are F6's input (C5's 120 maps).

The training set's features are computed by Ray Data over the shards (actors that hold
the network, on a GPU when there is one) and streamed to the driver, which keeps the
nearest ones for each query and writes the features to Parquet files, so that a rerun for
other validation images reads them instead of passing the training set through the
network again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from alexnet import tracking
from alexnet.data import manifest as mf
from alexnet.data.augment import eval_batch
from alexnet.errors import UserError
from alexnet.members import Member
from alexnet.plots import retrieval_figure, top5_figure
from alexnet.store import parquet_file, read_parquet

FEATURES_INFO = "features.json"


class PenultimateFeatures:
    """A member's network, returning for each image the input of its last fully connected
    layer (its last hidden layer) from the centre crop. A Ray Data actor, or called in this
    process for a few images."""

    def __init__(self, member: Any, threads: int = 0) -> None:
        import ray

        if isinstance(member, list) and member and isinstance(member[0], ray.ObjectRef):
            member = ray.get(member[0])  # inside a list, so Ray hands over the reference
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if threads and self.device.type == "cpu":
            torch.set_num_threads(threads)  # Ray sets 1 for actors with fractional CPUs
        self.model = member.build().to(self.device)
        self.mean = torch.tensor(member.rgb_mean, dtype=torch.float32, device=self.device)
        last_fc = [m for m in self.model.modules() if isinstance(m, torch.nn.Linear)][-1]
        self.captured: list[torch.Tensor] = []
        last_fc.register_forward_pre_hook(lambda _m, args: self.captured.append(args[0].flatten(1)))

    @torch.no_grad()
    def features(self, images: np.ndarray) -> np.ndarray:
        from alexnet.data.device import to_input

        self.captured.clear()
        self.model(to_input(torch.from_numpy(images).to(self.device), self.mean))
        return self.captured[-1].float().cpu().numpy()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"index": batch["index"], "label": batch["label"], "valid": batch["valid"],
                "feature": self.features(batch["image"]).astype(np.float16)}


def rows_by_index(paths: list[str], indices: list[int]) -> dict[int, dict[str, Any]]:
    """{index: {"image": JPEG bytes, "label": int}} for the rows of a split with these
    `index` values, reading only the JPEGs of the row groups that hold them."""
    wanted, found = set(indices), {}
    for path in paths:
        with parquet_file(path) as pf:
            for g in range(pf.num_row_groups):
                ids = pf.read_row_group(g, columns=["index"]).column("index").to_numpy()
                hits = np.flatnonzero(np.isin(ids, list(wanted)))
                if hits.size:
                    table = pf.read_row_group(g, columns=["image", "label", "index"]).take(pa.array(hits))
                    for row in table.to_pylist():
                        found[row["index"]] = {"image": row["image"], "label": row["label"]}
    missing = wanted - set(found)
    if missing:
        raise UserError(f"rows {sorted(missing)[:5]} are in none of the shards {paths[:2]}...; is --data the "
                        "dataset the run was trained on?")
    return found


def centre_crops(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(images, valid) as validation decodes them: each 256x256 JPEG's centre 224 crop."""
    batch = eval_batch({"image": [r["image"] for r in rows], "label": np.array([r["label"] for r in rows]),
                        "index": np.arange(len(rows))})
    return batch["image"], batch["valid"]


def pick(paths: list[str], count: int, seed: int) -> list[int]:
    """`count` row indices of a split, drawn without repetition from `seed`."""
    ids = read_parquet(paths, columns=["index"]).column("index").to_numpy()
    return np.random.default_rng(seed).choice(ids, size=min(count, len(ids)), replace=False).tolist()


@dataclass(frozen=True)
class FeaturesKey:
    """What a folder of kept features were computed from: a rerun reuses them only for the
    same network and the same training shards."""

    run_id: str
    data: str
    train_images: int


def kept_features(folder: Path, key: FeaturesKey) -> list[Path] | None:
    """The Parquet files of features computed for `key`, or None where there are none."""
    info = folder / FEATURES_INFO
    if not info.is_file() or json.loads(info.read_text()) != asdict(key):
        return None
    return sorted(folder.glob("part-*.parquet"))


class Nearest:
    """The `k` nearest training rows to each query, over feature batches as they come."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.queries = queries.astype(np.float32)
        self.k = k
        self.best_d = np.full((len(queries), 0), np.inf, np.float32)
        self.best_i = np.zeros((len(queries), 0), np.int64)

    def add(self, features: np.ndarray, index: np.ndarray) -> None:
        f = features.astype(np.float32)
        d = ((self.queries ** 2).sum(1, keepdims=True) - 2 * self.queries @ f.T + (f ** 2).sum(1)).clip(min=0)
        all_d = np.concatenate([self.best_d, np.sqrt(d)], 1)
        all_i = np.concatenate([self.best_i, np.broadcast_to(index, d.shape)], 1)
        keep = np.argsort(all_d, 1, kind="stable")[:, :self.k]
        self.best_d, self.best_i = np.take_along_axis(all_d, keep, 1), np.take_along_axis(all_i, keep, 1)


def feature_batches(data_root: Path, manifest: mf.Manifest, member: Member, batch_size: int,
                    device: str) -> Iterator[dict[str, np.ndarray]]:
    """The training split's features, computed by Ray Data actors holding the network."""
    import ray
    from ray.data import ActorPoolStrategy

    from alexnet.data.pipeline import eval_dataset
    from alexnet.ensemble import inference_resources
    from alexnet.memory import network_process_env

    actors, actor_cpus, actor_gpus, res = inference_resources(ray.cluster_resources(), device)
    ds = eval_dataset(str(data_root), manifest, res, "center", split="train").map_batches(
        PenultimateFeatures, fn_constructor_kwargs={"member": [ray.put(member)], "threads": max(1, round(actor_cpus))},
        compute=ActorPoolStrategy(size=actors), num_cpus=actor_cpus, num_gpus=actor_gpus, batch_size=batch_size,
        batch_format="numpy", runtime_env={} if actor_gpus else {"env_vars": network_process_env()})
    yield from ds.iter_batches(batch_size=batch_size, batch_format="numpy")


def neighbours(queries: np.ndarray, k: int, folder: Path, key: FeaturesKey,
               compute: Iterator[dict[str, np.ndarray]] | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """(distances, training indices), each (queries, k), from the features kept in
    `folder` for `key`, or from `compute`'s batches, which are then kept there; and
    whether they were computed now."""
    nearest = Nearest(queries, k)
    kept = kept_features(folder, key)
    if kept is not None:
        for path in kept:
            table = pq.read_table(path)
            feats = np.stack(table.column("feature").to_numpy(zero_copy_only=False)).astype(np.float32)
            nearest.add(feats, table.column("index").to_numpy())
        return nearest.best_d, nearest.best_i, False
    if compute is None:
        raise UserError(f"{folder} holds no features of run {key.run_id} on {key.data}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FEATURES_INFO).unlink(missing_ok=True)  # stale until every part is written
    for old in folder.glob("part-*.parquet"):
        old.unlink()
    for n, batch in enumerate(compute):
        keep = batch["valid"]
        feats, index = batch["feature"][keep], batch["index"][keep]
        nearest.add(feats, index)
        dim = feats.shape[1] if feats.ndim == 2 else 0
        column = pa.FixedSizeListArray.from_arrays(pa.array(feats.reshape(-1), pa.float16()), dim)
        pq.write_table(pa.table({"index": index, "label": batch["label"][keep], "feature": column}),
                       folder / f"part-{n:06d}.parquet")
    (folder / FEATURES_INFO).write_text(json.dumps(asdict(key), indent=1))
    return nearest.best_d, nearest.best_i, True


@dataclass
class FiguresOutcome:
    top5_png: Path
    retrieval_png: Path
    features: Path
    features_computed: bool
    top5: list[dict[str, Any]]  # per image: index, label, classes (top five), probs
    nearest: list[dict[str, Any]]  # per query: index, label, neighbours (training indices), distances


def make_figures(members: list[Member], merge: str, run_id: str, data_root: Path, out: Path, images: int,
                 queries: int, k: int, seed: int, features_dir: Path, batch_size: int = 64,
                 device: str = "auto") -> FiguresOutcome:
    """Both halves of figure 4 for the run (an ensemble's top five are its merged
    probabilities; its retrieval uses its first member's features), as PNGs in `out`
    and as artifacts of the run under `figures/`."""
    from alexnet.ensemble import MemberScorer, as_probs, merged

    manifest, classes = mf.load(data_root)
    names = mf.class_names(data_root, classes)
    val_paths, train_paths = manifest.shard_paths(str(data_root), "val"), manifest.shard_paths(str(data_root), "train")
    picked = pick(val_paths, images + queries, seed)
    rows = rows_by_index(val_paths, picked)
    crops, valid = centre_crops([rows[i] for i in picked])
    scores = torch.from_numpy(MemberScorer(members, logits=merge == "logits").scores(crops))
    probs = as_probs(merged(scores, merge), merge)  # type: ignore[arg-type]
    top_p, top_c = probs.topk(min(5, probs.shape[1]), 1)
    shown = [{"index": i, "label": rows[i]["label"], "classes": c.tolist(), "probs": p.tolist()}
             for i, c, p, ok in zip(picked, top_c, top_p, valid, strict=True) if ok][:images]

    query_ids = [i for i, ok in zip(picked, valid, strict=True) if ok][-queries:]
    query_crops = crops[[picked.index(i) for i in query_ids]]
    query_feats = PenultimateFeatures(members[0]).features(query_crops)
    key = FeaturesKey(members[0].run_id, str(data_root.resolve()), manifest.splits["train"].images)
    compute = None if kept_features(features_dir, key) is not None else \
        feature_batches(data_root, manifest, members[0], batch_size, device)
    dist, idx, computed = neighbours(query_feats, k, features_dir, key, compute)
    train_rows = rows_by_index(train_paths, sorted({int(i) for i in idx.reshape(-1)}))
    neighbour_crops = centre_crops([train_rows[int(i)] for i in idx.reshape(-1)])[0].reshape(
        len(query_ids), k, *query_crops.shape[1:])
    nearest = [{"index": q, "label": rows[q]["label"], "neighbours": idx[n].tolist(), "distances": dist[n].tolist(),
                "neighbour_labels": [train_rows[int(i)]["label"] for i in idx[n]]} for n, q in enumerate(query_ids)]

    out.mkdir(parents=True, exist_ok=True)
    title = f"run {run_id}" + (f", an ensemble of {len(members)}" if len(members) > 1 else "")
    top5_png = top5_figure([crops[picked.index(s["index"])] for s in shown],
                           [[names[c] for c in s["classes"]] for s in shown], [s["probs"] for s in shown],
                           [names[s["label"]] for s in shown], out / "top5.png", title)
    retrieval_png = retrieval_figure(query_crops, neighbour_crops, [names[r["label"]] for r in nearest],
                                     [[names[lab] for lab in r["neighbour_labels"]] for r in nearest],
                                     out / "retrieval.png",
                                     f"{title}: nearest training images by the last hidden layer"
                                     + (" (member 1)" if len(members) > 1 else ""))
    (out / "figures.json").write_text(json.dumps({"top5": shown, "nearest": nearest}, indent=1))
    client = tracking.client()
    for path in (top5_png, retrieval_png, out / "figures.json"):
        client.log_artifact(run_id, str(path), "figures")
    return FiguresOutcome(top5_png, retrieval_png, features_dir, computed, shown, nearest)
