"""Assemble an ensemble of AlexNets, as the paper's best entry did: train or gather N
members that differ in their seed, average their predictions on the validation set, and
record every member's and the ensemble's top-1/top-5 error in one MLflow run. Each member
is rebuilt from its own checkpoint, so gathered members (--runs, --parent, --tag) may be
different networks (jobs/train.py --arch).

    python jobs/ensemble.py --preset digits                    # make ensemble: train 7, assemble
    python jobs/ensemble.py --train --members 7 --data /data/shards --train-args "--workers 8"
    python jobs/ensemble.py --parent <seed sweep's parent run id> --eval-crop ten
    python jobs/ensemble.py --runs ID1,ID2,ID3 --merge logits
    python jobs/ensemble.py --member-experiment alexnet --tag team=vision --members 5

With --train, rerunning the same command with the same --name resumes the members'
training where it stopped.
"""

from __future__ import annotations

from alexnet import cli
from alexnet.assemble import assemble, check
from alexnet.config import ENSEMBLE_PRESETS, EnsembleConfig
from alexnet.ray_setup import init_ray


def main(argv: list[str] | None = None) -> int:
    cfg = cli.parse(EnsembleConfig, __doc__, argv, presets=ENSEMBLE_PRESETS)
    print(f"[ensemble] config:\n{cli.describe(cfg)}", flush=True)
    checked = check(cfg)  # data, tracking server, members and class lists fail before Ray starts
    init_ray()  # joins RAY_ADDRESS or a running local head, else starts a local Ray
    outcome = assemble(cfg, checked)
    print(f"[ensemble] done. MLflow run {outcome.run_id}: ensemble of {len(outcome.member_run_ids)} "
          f"top-1 error {outcome.top1:.2f}%, top-5 error {outcome.top5:.2f}%", flush=True)
    return 0


if __name__ == "__main__":
    cli.run(main)
