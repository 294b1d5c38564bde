"""The paper's ablations: each design choice it argues for with a measured difference,
as a training variant off its recipe, with the paper's claim beside it.

A study is a comparison (`alexnet.compare`): the paper's network (the variant `paper`)
and one variant per ablation, each a set of `jobs/train.py` flags, trained one after
another as children of one MLflow parent run. One ablation trains nothing: ten crops at
test time re-scores the `paper` variant's final network (the paper's claim is about the
test protocol of one network, so a second training would add its noise to the
difference). The report puts each variant's errors beside the baseline's and the
paper's claimed difference, and for the two training-speed claims (ReLU against tanh,
dropout) the epochs and training time to a training-error threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BASELINE = "paper"


@dataclass(frozen=True)
class Ablation:
    """One switch off the paper's recipe. `top1`/`top5`: the paper's claimed difference
    (variant minus paper, in points) where it gives one; `speed`: the claim is about how
    fast the training error falls, so the report gives the epochs and time to the
    threshold; `rescores`: the variant scores that variant's final network instead of
    training one."""

    name: str
    flags: str
    claim: str
    top1: float | None = None
    top5: float | None = None
    speed: bool = False
    rescores: str = ""


ABLATIONS: tuple[Ablation, ...] = (
    Ablation("tanh", "--activation tanh", "ReLU reaches 25% training error about six times faster than tanh "
             "(section 3.1, figure 1: a four-layer net on CIFAR-10)", speed=True),
    Ablation("no-lrn", "--lrn none", "LRN lowers top-1 / top-5 error by 1.4 / 1.2 points (section 3.3)", 1.4, 1.2),
    Ablation("plain-pooling", "--pooling plain", "overlapping pooling lowers top-1 / top-5 error by 0.4 / 0.3 "
             "points, and overfits slightly less (section 3.4)", 0.4, 0.3),
    Ablation("no-pca", "--pca-std 0", "PCA colour jitter lowers top-1 error by over 1 point (section 4.1)", 1.0),
    Ablation("no-crop-flip", "--no-crop-flip", "without the random crops and flips the network overfits badly, "
             "forcing a much smaller one (section 4.1)"),
    Ablation("no-dropout", "--dropout 0", "without dropout the network overfits badly; with it, convergence takes "
             "about twice as many iterations (section 4.2)", speed=True),
    Ablation("no-conv3", "--remove-conv 3", "removing any middle convolutional layer raises top-1 error by about "
             "2 points (section 7)", 2.0),
    Ablation("ungrouped", "--no-grouped", "none: the common single-device simplification, all kernels of conv2, "
             "conv4 and conv5 seeing all maps (62.4 M parameters)"),
    Ablation("half-kernels", "--kernels half --no-grouped", "the two-GPU net beats a one-GPU net with half the "
             "kernels in conv1-4 by 1.7 / 1.2 points (section 3.2)", 1.7, 1.2),
    Ablation("ten-crops", "--eval-crop ten", "ten 224 patches averaged at test time: 37.5 / 17.0 against 39.0 / "
             "18.3 with one (section 6, ILSVRC-2010)", -1.5, -1.3, rescores=BASELINE),
)
BY_NAME = {a.name: a for a in ABLATIONS}


def chosen(names: tuple[str, ...]) -> list[Ablation]:
    """The ablations `--ablations` names, in the paper's order; "all" is every one."""
    if "all" in names:
        return list(ABLATIONS)
    return [a for a in ABLATIONS if a.name in names]


def unknown(names: tuple[str, ...]) -> list[str]:
    return [n for n in names if n != "all" and n not in BY_NAME]


def epochs_to(threshold: float, train_errors: list[float], seconds: list[float]) -> tuple[int, float] | None:
    """(epochs, cumulative training seconds) at the first epoch whose training error is at
    or below `threshold` percent, or None where no epoch reached it."""
    for epoch, (err, s) in enumerate(zip(train_errors, seconds, strict=False), start=1):
        if not math.isnan(err) and err <= threshold:
            return epoch, s
    return None


def signed(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:+.{digits}f}"
