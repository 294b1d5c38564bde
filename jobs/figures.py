"""The paper's figure 4 for a trained run or an ensemble: validation images with their five
most probable classes (the true class marked), and validation images beside the training
images nearest to them by the network's last hidden layer (AlexNet's 4096 fc7 activations).

    python jobs/figures.py --run RUN_ID --data data/digits
    python jobs/figures.py --run ENSEMBLE_RUN_ID --data /data/imagenet-shards --images 16 --queries 8
    python jobs/figures.py --run RUN_ID --data /data/imagenet-shards --seed 1 \\
        --features outputs/figures-RUN_ID/train-features     # other images, the same training features

Writes top5.png, retrieval.png and figures.json to --out and logs them to the run under
figures/. The training set's features are computed by Ray Data over the shards and kept
in --features, so a rerun for other validation images reuses them. Class names come from
the data's class_names.json (prepare_data.py --synset-words; the embedded digits have
theirs), else the wnids are shown.
"""

from __future__ import annotations

from pathlib import Path

from alexnet import cli, tracking
from alexnet.config import FiguresConfig
from alexnet.data import manifest as mf
from alexnet.errors import UserError
from alexnet.figures import make_figures
from alexnet.predict import resolve_members
from alexnet.ray_setup import init_ray
from alexnet.store import open_location, resolve_path


def main(argv: list[str] | None = None) -> int:
    cfg = cli.parse(FiguresConfig, __doc__, argv)
    print(f"[figures] config:\n{cli.describe(cfg)}", flush=True)
    data_root = open_location(cfg.data)
    _, classes = mf.load(data_root)
    tracking.check_reachable(tracking.tracking_uri())
    members, merge = resolve_members(tracking.client(), cfg.run)  # a bad run is refused before Ray starts
    if members[0].classes != classes:
        raise UserError(f"--run {cfg.run} was trained on other classes than --data {data_root}'s; pass the "
                            "data it was trained on")
    out = resolve_path(cfg.out) if cfg.out else resolve_path(f"outputs/figures-{cfg.run}")
    features = resolve_path(cfg.features) if cfg.features else out / "train-features"
    init_ray()  # joins RAY_ADDRESS or a running local head, else starts a local Ray
    outcome = make_figures(members, merge, cfg.run, data_root, Path(out), cfg.images, cfg.queries, cfg.neighbours,
                           cfg.seed, Path(features), cfg.batch_size, cfg.device)
    print(f"[figures] {'computed and kept' if outcome.features_computed else 'reused'} the training set's "
          f"features in {outcome.features}", flush=True)
    print(f"[figures] wrote {outcome.top5_png} and {outcome.retrieval_png}; logged to run {cfg.run} under "
          "figures/", flush=True)
    return 0


if __name__ == "__main__":
    cli.run(main)
