"""Sweep learning rate, weight decay and seed with Ray Tune; every trial is a run of
jobs/train.py's training, logged as a child of one MLflow parent run.

    python jobs/tune.py --preset digits                      # make tune: a 2x2 grid on digits
    python jobs/tune.py --data /data/shards --train-args "--batch-size 256" \\
        --num-samples 16 --workers-per-trial 4 --epochs 30    # search: log-uniform ranges, ASHA
    python jobs/tune.py --train-preset digits --seeds 0..6    # seed mode: one trial per seed
    python jobs/tune.py --config sweep.yaml                   # the same flags from a YAML file

Resuming: rerun the same command with the same --name (after a crash, or after Ctrl-C,
which stops the sweep cleanly and leaves its parent run KILLED). Finished, stopped and
failed trials are kept; unfinished ones continue from their last epoch checkpoint, in the
same MLflow runs, each of which logs `resumed_at_epoch` where it went on.
"""

from __future__ import annotations

from dataclasses import replace

from alexnet import cli
from alexnet.config import SWEEP_PRESETS, SweepConfig, train_config_for
from alexnet.ray_setup import init_ray
from alexnet.sweep import sweep
from alexnet.trainer import default_name, preflight, run_lock


def main(argv: list[str] | None = None) -> int:
    cfg = cli.parse(SweepConfig, __doc__, argv, presets=SWEEP_PRESETS, config_file=True)
    train = train_config_for(cfg.data, cfg.train_preset, cfg.train_args)
    print(f"[tune] config:\n{cli.describe(cfg)}", flush=True)
    preflight(replace(train, storage=cfg.storage))  # bad data, tracking server or storage fail before Ray starts
    cfg = replace(cfg, name=cfg.name or default_name("sweep"))
    with run_lock(cfg.storage, cfg.name, "sweep"):  # a second sweep of this name is refused before Ray starts
        init_ray()  # joins RAY_ADDRESS or a running local head, else starts a local Ray
        outcome = sweep(cfg, train, lock=False)
    failed = [t for t in outcome.trials if t.status == "FAILED"]
    if outcome.interrupted:
        return 130  # the shell's code for Ctrl-C; the sweep printed how to resume it
    if outcome.best is None:
        return 1
    print(f"[tune] done: {len(outcome.trials)} trial(s), {len(failed)} failed; parent run "
          f"{outcome.parent_run_id}, best_val_top1_err {outcome.best.val_top1_err:.2f}%", flush=True)
    return 0


if __name__ == "__main__":
    cli.run(main)
