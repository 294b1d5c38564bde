"""Prepare ImageNet (or any tree in its layout) as Parquet shards of 256x256 JPEGs.

    python jobs/prepare_data.py --src /data/imagenet --out /data/imagenet-shards
    python jobs/prepare_data.py --digits --out data/digits    # the embedded default
    python jobs/prepare_data.py --photos 4000 --out data/photos  # photo-like JPEGs, for jobs/bench.py
    python jobs/prepare_data.py --src /data/imagenet --out s3://bucket/imagenet-shards  # an object store
    python jobs/prepare_data.py --src /data/imagenet --out /data/imagenet-shards \\
        --synset-words /data/LOC_synset_mapping.txt               # class names for the figures

Reruns on the same --out resume: finished chunks are kept, the rest are rebuilt. --out must
be new, empty or prepared by this job, and one preparation at a time holds it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from alexnet import cli
from alexnet.data import manifest as mf
from alexnet.data.digits import class_names as digit_names
from alexnet.data.digits import export_digits
from alexnet.data.photos import export_photos
from alexnet.data.prepare import prepare
from alexnet.errors import UserError
from alexnet.ray_setup import init_ray
from alexnet.store import as_location, write_atomic


@dataclass
class PrepareConfig:
    out: str = field(default="data/digits", metadata={
        "help": "output directory for the shards, or an object-store URI (s3://bucket/prefix, gs://...)"})
    src: str = field(default="", metadata={"help": "source tree: train/<wnid>/*.JPEG and val/..."})
    digits: bool = field(default=False, metadata={
        "help": "prepare the embedded default (scikit-learn digits) instead of --src"})
    photos: int = field(default=0, metadata={
        "help": "prepare N windows of scikit-learn's sample photographs instead (a benchmark set)"})
    val_labels: str = field(default="", metadata={
        "help": "labels for a flat val/ folder: ILSVRC2012_validation_ground_truth.txt "
                "or a CSV with ImageId,PredictionString"})
    val_synsets: str = field(default="", metadata={
        "help": "with a ground-truth .txt: the devkit's meta.mat or wnids in ILSVRC2012_ID order"})
    synset_words: str = field(default="", metadata={
        "help": "each class's human-readable name, for figures (jobs/figures.py): LOC_synset_mapping.txt, the "
                "devkit's synset_words.txt or meta.mat; written to <out>/class_names.json (--digits names its "
                "own); a rerun with it on prepared data only adds the names"})
    chunk_size: int = field(default=10_000, metadata={"help": "files per resumable chunk"})
    quality: int = field(default=90, metadata={"help": "JPEG quality of the shards"})

    def __post_init__(self) -> None:
        if self.photos < 0:
            raise UserError(f"--photos must be a number of images, got {self.photos}")
        sources = bool(self.src) + self.digits + bool(self.photos)
        if sources != 1:
            raise UserError("pass exactly one of --src DIR (an ImageNet-style tree), --digits or --photos N")
        if self.chunk_size < 1:
            raise UserError(f"--chunk-size must be positive, got {self.chunk_size}")
        if not 1 <= self.quality <= 100:
            raise UserError(f"--quality must be within 1..100, got {self.quality}")


def main(argv: list[str] | None = None) -> int:
    cfg = cli.parse(PrepareConfig, __doc__, argv)
    print(f"[prepare] config:\n{cli.describe(cfg)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(cfg.src)
        if cfg.digits:
            src = Path(tmp) / "digits"
            counts = export_digits(src)
            print(f"[prepare] wrote scikit-learn digits in ImageNet layout: {counts}", flush=True)
        elif cfg.photos:
            src = Path(tmp) / "photos"
            counts = export_photos(src, cfg.photos)
            print(f"[prepare] wrote windows of scikit-learn's sample photos in ImageNet layout: {counts}",
                  flush=True)
        names = digit_names() if cfg.digits else mf.read_synset_words(cfg.synset_words) if cfg.synset_words else {}
        # Ray starts (~20 s) only once --src and --out are checked and --out is locked
        prepare(src, cfg.out, val_labels=cfg.val_labels or None, val_synsets=cfg.val_synsets or None,
                chunk_size=cfg.chunk_size, quality=cfg.quality, start_ray=lambda: init_ray(log_to_driver=False))
    if names:
        out = as_location(cfg.out, "--out")
        classes = json.loads((out / mf.CLASSES).read_text())
        named = {wnid: names[wnid] for wnid in classes if wnid in names}
        write_atomic(out / mf.CLASS_NAMES, json.dumps(named, indent=1))
        print(f"[prepare] names of {len(named)} of the {len(classes)} classes in {out / mf.CLASS_NAMES}",
              flush=True)
    return 0


if __name__ == "__main__":
    cli.run(main)
