"""Train several networks on one dataset with one command and one budget, and record
them as one MLflow parent run with a child run per network; then a table (Markdown and
CSV) and a plot of validation error against training time, one line per network.

    python jobs/compare.py --list                         # every network's size and cost; trains nothing
    python jobs/compare.py --list --json archs.json       # the same, as JSON
    python jobs/compare.py --preset digits                # make compare: 5 networks on the demo data, 2 CPUs
    python jobs/compare.py --data /data/imagenet-shards --archs alexnet,vgg16,resnet50 \\
        --train-args "--workers 8" --epochs 10
    python jobs/compare.py --preset ablations             # make ablations: the paper's ablations on the demo data
    python jobs/compare.py --data /data/imagenet-shards --ablations no-lrn,plain-pooling,ten-crops \\
        --train-args "--workers 8" --epochs 90

With --ablations the variants are the paper's AlexNet and its ablations (docs/ablations.md),
and the report adds each one's difference from the paper's network beside the paper's
claimed difference. Each network trains as `jobs/train.py --arch NAME` would (its paper's recipe, under
--train-preset, --train-args and --variant-args), one after another. Rerunning with the
same --name skips the networks that finished and resumes the others from their last
epoch checkpoint.
"""

from __future__ import annotations

from dataclasses import replace

from alexnet import cli
from alexnet.compare import (
    COMPARE_PRESETS,
    CompareConfig,
    arch_list,
    arch_list_table,
    compare,
    variant_config,
    variants_of,
    write_arch_list,
)
from alexnet.ray_setup import init_ray
from alexnet.trainer import default_name, preflight, run_lock


def main(argv: list[str] | None = None) -> int:
    cfg = cli.parse(CompareConfig, __doc__, argv, presets=COMPARE_PRESETS)
    if cfg.list or cfg.json:
        rows = arch_list()
        print(f"[compare] every network at 1000 classes, its native input, FLOPs per image (2 per "
              f"multiply-add):\n{arch_list_table(rows)}", flush=True)
        if cfg.json:
            print(f"[compare] wrote {write_arch_list(cfg.json, rows)}", flush=True)
        return 0
    print(f"[compare] config:\n{cli.describe(cfg)}", flush=True)
    cfg = replace(cfg, name=cfg.name or default_name("compare"))
    variants = variants_of(cfg)
    for variant in variants:  # bad flags, data, tracking server or storage fail before Ray starts
        preflight(variant_config(cfg, variant, cfg.name))
    with run_lock(cfg.storage, cfg.name, "comparison"):  # a second comparison of this name is refused at once
        init_ray()  # joins RAY_ADDRESS or a running local head, else starts a local Ray
        outcome = compare(cfg, variants, lock=False)
    print(f"[compare] done: {len(outcome.rows)} variant(s), {len(outcome.failed)} failed; parent run "
          f"{outcome.parent_run_id} ('{outcome.name}')", flush=True)
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    cli.run(main)
