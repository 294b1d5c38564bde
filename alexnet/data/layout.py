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
        return csv_labels(labels_file)
    if synsets_file is None:
        raise UserError(
            f"--val-labels {labels_file} holds ILSVRC2012_IDs: also pass --val-synsets "
            "(the devkit's data/meta.mat, or a text file of wnids in ILSVRC2012_ID order)"
        )
    wnids = ground_truth_wnids(labels_file, read_synset_order(synsets_file), synsets_file)
    stems = sorted(p.stem for p in val_dir.iterdir() if is_image_file(p))
    if len(stems) != len(wnids):
        raise UserError(
            f"--val-labels {labels_file} has {len(wnids)} labels but {val_dir} holds "
            f"{len(stems)} images: they must be the full ILSVRC2012 validation set"
        )
    return dict(zip(stems, wnids, strict=True))


def ground_truth_wnids(labels_file: Path, order: list[str], synsets_file: Path) -> list[str]:
    """The wnid of each line of the devkit's ground truth (1-based ILSVRC2012_IDs).

    Every id is checked, because Python's ``order[0 - 1]`` would quietly give id 0 the
    last synset: a mislabelled image that no later step can notice.
    """
    wnids = []
    for n, line in enumerate(labels_file.read_text().splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= len(order)):
            raise UserError(
                f"--val-labels {labels_file} line {n}: '{text[:40]}' is not an ILSVRC2012_ID "
                f"within 1..{len(order)} (the synsets of --val-synsets {synsets_file}); "
                "pass the devkit's ILSVRC2012_validation_ground_truth.txt with its meta.mat"
            )
        wnids.append(order[int(text) - 1])
    return wnids


def csv_labels(labels_file: Path) -> dict[str, str]:
    """ImageId -> the first wnid of its PredictionString; a row without one names its line."""
    labels = {}
    with labels_file.open(newline="") as f:
        reader = csv.DictReader(f)
        if not {"ImageId", "PredictionString"} <= set(reader.fieldnames or []):
            raise UserError(
                f"--val-labels {labels_file}: expected CSV columns ImageId,PredictionString"
            )
        for row in reader:
            words = (row["PredictionString"] or "").split()
            if not words:
                raise UserError(
                    f"--val-labels {labels_file} line {reader.line_num}: ImageId {row['ImageId']!r} "
                    "has no PredictionString (expected 'wnid x_min y_min x_max y_max ...')"
                )
            labels[row["ImageId"]] = words[0]
    if not labels:
        raise UserError(f"--val-labels {labels_file}: no rows under the header ImageId,PredictionString")
    return labels


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
