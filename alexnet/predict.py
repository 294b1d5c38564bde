"""Classify images with a trained run or an ensemble run, preprocessed as validation is:
shorter side to 256, the centre 256x256 square, then its centre 224 crop or ten crops."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from alexnet import members as mb
from alexnet.data.augment import center_crop
from alexnet.data.images import load_as_rgb_square
from alexnet.ensemble import MemberScorer, Merge, Tally, merged, predictions_frame
from alexnet.errors import UserError

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def resolve_members(client: MlflowClient, run_id: str) -> tuple[list[mb.Member], Merge]:
    """A training run is one member; an ensemble run (jobs/ensemble.py) brings its
    members and its merge rule."""
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        raise UserError(f"--run {run_id}: no such MLflow run at {client.tracking_uri}; check the id and "
                        "MLFLOW_TRACKING_URI") from e
    ids, merge = [run_id], "prob"
    if "member_run_ids" in run.data.params:
        ids, merge = run.data.params["member_run_ids"].split(","), run.data.params.get("merge", "prob")
    members = [mb.load_member(client, i) for i in ids]
    mb.check_classes(members, members[0].classes, f"member {ids[0]}")
    return members, merge  # type: ignore[return-value]


def list_images(folder: Path) -> list[Path]:
    """Every file in `folder`, images or not: a file that is not one still gets its row
    (with the reason), so the output accounts for everything the user pointed at."""
    if not folder.is_dir():
        raise UserError(f"--images {folder}: not a directory; pass a folder of images")
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in paths):
        raise UserError(f"--images {folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in it")
    return paths


def not_an_image(path: Path) -> str | None:
    """Why `path` is not read as an image (None when its extension is an image's)."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return None
    return (f"not an image: extension '{path.suffix}' is none of {', '.join(sorted(IMAGE_SUFFIXES))}" if path.suffix
            else f"not an image: no extension (expected one of {', '.join(sorted(IMAGE_SUFFIXES))})")


def prepare_output(out: str) -> Path:
    """Create --out's folder and prove it writable before any scoring, so that a long
    scoring run never ends in a traceback over the output path."""
    path = Path(out).expanduser()
    if path.is_dir():
        raise UserError(f"--out {out}: is a directory; name a CSV file, e.g. {path / 'predictions.csv'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise UserError(f"--out {out}: cannot write there ({e.strerror or e}); pass a path in a writable folder") from e
    return path


def write_csv(preds: pd.DataFrame, path: Path) -> None:
    """Write then rename: an interrupted write never leaves half a CSV under the name."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    preds.to_csv(tmp, index=False)
    os.replace(tmp, path)


def top5_columns(probs: torch.Tensor, classes: list[str]) -> dict[str, list]:
    top = probs.topk(min(5, probs.shape[1]), dim=1)
    cols: dict[str, list] = {}
    for j in range(top.indices.shape[1]):
        cols[f"class_{j + 1}"] = [classes[i] for i in top.indices[:, j].tolist()]
        cols[f"prob_{j + 1}"] = top.values[:, j].tolist()
    return cols


def classify_folder(members: list[mb.Member], merge: Merge, folder: Path, crop: str = "center",
                    batch_size: int = 64) -> pd.DataFrame:
    """One row per file: its top-5 classes and probabilities, or the reason it could not
    be read (such files are kept in the output, never dropped)."""
    scorer = MemberScorer(members, logits=merge == "logits")
    paths, frames = list_images(folder), []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        images, ok, errors = [], [], {}
        for p in chunk:
            reason = not_an_image(p)
            if reason is not None:
                errors[p] = reason
                continue
            try:
                square = load_as_rgb_square(p.read_bytes())
                images.append(center_crop(square) if crop == "center" else square)
                ok.append(p)
            except Exception as e:  # noqa: BLE001 - any unreadable file is reported, not fatal
                errors[p] = f"{type(e).__name__}: {e}".splitlines()[0]
        frame = pd.DataFrame({"image": [str(p.relative_to(folder)) for p in chunk]})
        if ok:
            probs = merged(torch.from_numpy(scorer.scores(np.stack(images))), merge)
            scored = pd.DataFrame({"image": [str(p.relative_to(folder)) for p in ok],
                                   **top5_columns(probs, members[0].classes)})
            frame = frame.merge(scored, on="image", how="left")
        frame["error"] = [errors.get(p, "") for p in chunk]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def shard_predictions(t: Tally, ids: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """The merged top-5 of a scored split, with class names, one row per image."""
    preds = predictions_frame(t, ids)
    out = {"image": preds["image_id"].tolist(), "label": [classes[i] for i in preds["label"]]}
    for j in range(5):
        out[f"class_{j + 1}"] = [classes[t5[j]] if j < len(t5) and t5[j] >= 0 else "" for t5 in preds["top5"]]
        out[f"prob_{j + 1}"] = [p[j] if j < len(p) else 0.0 for p in preds["top5_prob"]]
    return pd.DataFrame(out)
