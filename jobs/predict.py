"""Classify images with a trained model (a training run) or an ensemble (an ensemble run),
using the validation preprocessing, and write the top-5 classes and probabilities as CSV.

    python jobs/predict.py --run RUN_ID --images photos/               # a folder, in-process
    python jobs/predict.py --run ENSEMBLE_RUN_ID --images photos/ --eval-crop ten
    python jobs/predict.py --run RUN_ID --data /data/shards --split val  # shards, with Ray Data

--images: every file in the folder gets a row; one that cannot be read, or has no image
extension, keeps it with the reason in the `error` column. --data: a row per image of the
split with its true `label` and no `error` column (a row that fails to decode has empty
classes; files the preparation skipped count as wrong in the errors printed).
"""

from __future__ import annotations

from pathlib import Path

import ray

from alexnet import cli, tracking
from alexnet.config import PredictConfig
from alexnet.data import manifest as mf
from alexnet.ensemble import image_ids, score, tally
from alexnet.errors import UserError
from alexnet.predict import classify_folder, prepare_output, resolve_members, shard_predictions, write_csv
from alexnet.ray_setup import init_ray
from alexnet.store import open_location


def main(argv: list[str] | None = None) -> int:
    cfg = cli.parse(PredictConfig, __doc__, argv)
    print(f"[predict] config:\n{cli.describe(cfg)}", flush=True)
    out = prepare_output(cfg.out)  # a bad --out fails now, not after the scoring
    tracking.check_reachable(tracking.tracking_uri())
    members, merge = resolve_members(tracking.client(), cfg.run)
    print(f"[predict] {len(members)} model(s) from run {cfg.run}, merging {merge}", flush=True)
    if cfg.images:
        preds = classify_folder(members, merge, Path(cfg.images), cfg.eval_crop, cfg.batch_size)
        bad = int((preds["error"] != "").sum())
        summary = f"{len(preds)} image(s), {bad} unreadable (see the error column)" if bad else f"{len(preds)} image(s)"
    else:
        root = open_location(cfg.data)
        manifest, classes = mf.load(root, ())
        if cfg.split not in manifest.splits:
            raise UserError(f"--split {cfg.split}: {root} has only {sorted(manifest.splits)}")
        mf.load(root, (cfg.split,))  # the split's shards are whole, before Ray starts
        if not ray.is_initialized():
            init_ray()
        ds = score(str(root), manifest, members, merge, cfg.eval_crop, cfg.batch_size, cfg.device, split=cfg.split)
        t = tally(ds.iter_batches(batch_size=cfg.batch_size, batch_format="numpy"), len(members), merge)
        preds = shard_predictions(t, image_ids(str(root), manifest, cfg.split), members[0].classes)
        top1, top5 = t.errors(manifest.splits[cfg.split].skipped)["prefixes"][-1]
        summary = f"{t.images} image(s) of {cfg.split}: top-1 error {top1:.2f}%, top-5 error {top5:.2f}%"
    write_csv(preds, out)
    print(f"[predict] {summary}; wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    cli.run(main)
