"""Find the images of an ImageNet-style source tree and their labels.

Two layouts are read, the ones people actually have on disk:

(a) class folders: ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``;
(b) ``train/<wnid>/*`` plus the ILSVRC2012 validation images as one flat ``val/`` folder
    with a labels file: the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (one
    ILSVRC2012_ID per line, in the devkit's synset order, given by ``meta.mat`` or a text
    file of wnids in that order), or the CSV with ``ImageId,PredictionString`` columns.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from alexnet.errors import UserError

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class SourceImage:
    path: str
    wnid: str


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def class_folders(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_class_folders(split_dir: Path) -> list[SourceImage]:
    images = []
    for wnid in class_folders(split_dir):
        files = sorted(p for p in (split_dir / wnid).iterdir() if is_image_file(p))
        images.extend(SourceImage(str(p), wnid) for p in files)
    return images


def read_synset_order(path: Path) -> list[str]:
    """wnids in ILSVRC2012_ID order, from the devkit's meta.mat or a text file."""
    if path.suffix == ".mat":
        from scipy.io import loadmat

        synsets = loadmat(str(path), squeeze_me=True)["synsets"]
        by_id = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
        return [by_id[i] for i in sorted(by_id) if i <= 1000]
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def flat_val_labels(
    val_dir: Path, labels_file: Path, synsets_file: Path | None
) -> dict[str, str]:
    """Map file stem -> wnid for a flat validation folder."""
    if not labels_file.is_file():
        raise UserError(f"--val-labels {labels_file}: file not found")
    if labels_file.suffix.lower() == ".csv":
        with labels_file.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"ImageId", "PredictionString"} <= set(rows[0]):
            raise UserError(
                f"--val-labels {labels_file}: expected CSV columns ImageId,PredictionString"
            )
        return {r["ImageId"]: r["PredictionString"].split()[0] for r in rows}
    if synsets_file is None:
        raise UserError(
            f"--val-labels {labels_file} holds ILSVRC2012_IDs: also pass --val-synsets "
            "(the devkit's data/meta.mat, or a text file of wnids in ILSVRC2012_ID order)"
        )
    order = read_synset_order(synsets_file)
    ids = [int(line) for line in labels_file.read_text().split()]
    stems = sorted(p.stem for p in val_dir.iterdir() if is_image_file(p))
    if len(stems) != len(ids):
        raise UserError(
            f"--val-labels {labels_file} has {len(ids)} labels but {val_dir} holds "
            f"{len(stems)} images: they must be the full ILSVRC2012 validation set"
        )
    return {stem: order[i - 1] for stem, i in zip(stems, ids, strict=True)}


def scan_flat_val(val_dir: Path, labels: dict[str, str]) -> list[SourceImage]:
    files = sorted(p for p in val_dir.iterdir() if is_image_file(p))
    missing = [p.name for p in files if p.stem not in labels]
    if missing:
        raise UserError(
            f"{val_dir}: {len(missing)} images have no label in --val-labels "
            f"(first: {missing[0]})"
        )
    return [SourceImage(str(p), labels[p.stem]) for p in files]


def find_images(
    src: Path,
    val_labels: Path | None = None,
    val_synsets: Path | None = None,
) -> tuple[list[str], dict[str, list[SourceImage]]]:
    """Return the class list (sorted train wnids) and the images of each split."""
    train_dir, val_dir = src / "train", src / "val"
    if not train_dir.is_dir():
        raise UserError(f"--src {src}: no train/ folder; expected train/<wnid>/*.JPEG")
    classes = class_folders(train_dir)
    if not classes:
        raise UserError(f"--src {src}: train/ holds no class folders (train/<wnid>/*.JPEG)")
    splits = {"train": scan_class_folders(train_dir)}
    if val_dir.is_dir():
        if val_labels is not None:
            labels = flat_val_labels(val_dir, val_labels, val_synsets)
            splits["val"] = scan_flat_val(val_dir, labels)
        elif class_folders(val_dir):
            splits["val"] = scan_class_folders(val_dir)
        elif any(is_image_file(p) for p in val_dir.iterdir()):
            raise UserError(
                f"{val_dir} is a flat folder of images: pass --val-labels "
                "(ILSVRC2012_validation_ground_truth.txt with --val-synsets, or the "
                "ImageId,PredictionString CSV)"
            )
    unknown = sorted({im.wnid for im in splits.get("val", [])} - set(classes))
    if unknown:
        raise UserError(
            f"{val_dir}: {len(unknown)} validation classes are not among train/'s "
            f"classes (first: {unknown[0]}); train and val must share one class list"
        )
    return classes, splits
