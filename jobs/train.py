"""Train the paper's AlexNet, or another classic network (--arch), with Ray Train (DDP),
Ray Data augmentation and MLflow.

    python jobs/train.py --preset digits                  # the embedded demo, CPU
    python jobs/train.py --arch resnet50 --data /data/imagenet-shards --workers 8
    python jobs/train.py --data /data/imagenet-shards --workers 8 --name paper-1
    ray job submit --working-dir . -- python jobs/train.py --data /abs/path ...

Defaults are the paper's recipe; --arch NAME starts from its own paper's recipe instead
(docs/architectures.md), and flags override either. Rerunning with the same --name
resumes that run from its last epoch checkpoint and continues the same MLflow run.
"""

from __future__ import annotations

from dataclasses import replace

from alexnet import cli
from alexnet.config import PRESETS, TRAIN_DEFAULTS_BY, TrainConfig
from alexnet.ray_setup import init_ray
from alexnet.trainer import default_name, fit, preflight, run_lock


def main(argv: list[str] | None = None) -> int:
    cfg = cli.parse(TrainConfig, __doc__, argv, presets=PRESETS, by_value=TRAIN_DEFAULTS_BY)
    print(f"[train] config:\n{cli.describe(cfg)}", flush=True)
    checked = preflight(cfg)  # bad data or an unreachable tracking server fail before Ray starts
    cfg = replace(cfg, name=cfg.name or default_name(cfg.arch))
    with run_lock(cfg.storage, cfg.name, "training run"):  # a second run of this name is refused before Ray starts
        init_ray()  # joins RAY_ADDRESS or a running local head, else starts a local Ray
        outcome = fit(cfg, lock=False, checked=checked)
    m = outcome.metrics
    print(f"[train] done. MLflow run {outcome.run_id} ('{outcome.run_name}'): "
          f"val top-1 error {m.get('val_top1_err', float('nan')):.2f}%, "
          f"top-5 error {m.get('val_top5_err', float('nan')):.2f}% after {int(m.get('epoch', 0))} epochs",
          flush=True)
    return 0


if __name__ == "__main__":
    cli.run(main)
