"""Pictures people would rather look at than read: a run's training curves and its first
layer's kernels, a sweep's trials side by side, an ensemble's error as members are added,
a comparison's variants against their training time, an ablation study's overfitting."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save(fig: Any, path: str | Path) -> Path:
    """Write `fig` as a PNG and free it: every figure here is a file for MLflow, not a window."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def training_curves(history: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    """Loss, top-1 and top-5 validation error per epoch, as a PNG."""
    epochs = list(range(1, len(history) + 1))
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    for key, label in (("val_top1_err", "top-1"), ("val_top5_err", "top-5")):
        ax_err.plot(epochs, [h[key] for h in history], marker="o", label=label)
    ax_err.set(xlabel="epoch", ylabel="validation error (%)", title="validation error")
    ax_err.legend()
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save(fig, path)


def sweep_curves(curves: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """Validation top-1 error per epoch, one line per trial (frames with `epoch` and
    `val_top1_err` columns, keyed by trial id): where ASHA cut trials is visible."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for trial, frame in curves.items():
        ax.plot(frame["epoch"], frame["val_top1_err"], marker="o", label=trial)
    ax.set(xlabel="epoch", ylabel="validation top-1 error (%)", title=title or "sweep")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save(fig, path)


def ensemble_curve(prefix_errors: list[list[float]], path: str | Path, title: str = "") -> Path:
    """Top-1 and top-5 error of the ensemble of the first k members, k = 1..N."""
    ks = list(range(1, len(prefix_errors) + 1))
    fig, ax = plt.subplots(figsize=(6, 4))
    for col, label in ((0, "top-1"), (1, "top-5")):
        ax.plot(ks, [e[col] for e in prefix_errors], marker="o", label=label)
    ax.set(xlabel="members averaged", ylabel="validation error (%)", title=title or "ensemble")
    ax.set_xticks(ks)
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)


def comparison_curves(curves: Mapping[str, tuple[list[float], list[float]]], path: str | Path,
                      title: str = "") -> Path:
    """Validation top-1 error against cumulative training time, one line per variant
    (``{variant: (seconds, errors)}``, a point per epoch): a cheap network that learns
    slowly per epoch and a costly one that learns fast are compared on what they cost."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant, (seconds, errors) in curves.items():
        ax.plot([s / 60 for s in seconds], errors, marker="o", label=variant)
    ax.set(xlabel="cumulative training time (min)", ylabel="validation top-1 error (%)",
           title=title or "comparison")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save(fig, path)


def ablation_curves(curves: Mapping[str, tuple[list[float], list[float]]], path: str | Path,
                    title: str = "") -> Path:
    """Training (dashed) and validation (solid) top-1 error by epoch, one colour per
    variant (``{variant: (train_errors, val_errors)}``): a variant that overfits has its
    validation line far above its training line."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (variant, (train, val)) in enumerate(curves.items()):
        colour = f"C{i % 10}"
        ax.plot(range(1, len(val) + 1), val, marker="o", color=colour, label=variant)
        if train:
            ax.plot(range(1, len(train) + 1), train, linestyle="--", color=colour)
    ax.set(xlabel="epoch", ylabel="top-1 error (%): validation solid, training dashed",
           title=title or "ablations")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    return save(fig, path)


def first_conv(model: Any) -> tuple[np.ndarray, int]:
    """The first convolution's kernels (out, in, kh, kw) and how many groups the next
    convolution splits its maps into: AlexNet's conv2 reads conv1's first 48 maps on one
    GPU and the other 48 on the other, so its groups are conv1's two halves."""
    from torch import nn

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    weights = convs[0].weight.detach().float().cpu().numpy()
    follows = len(convs) > 1 and convs[1].in_channels == convs[0].out_channels
    return weights, convs[1].groups if follows else 1


def kernel_mosaic(kernels: np.ndarray, cols: int) -> np.ndarray:
    """Kernels (n, c, kh, kw) as one picture, `cols` to a row, each scaled to [0, 1] on its
    own (its contrast, not its magnitude, is what shows), one pixel apart. RGB kernels
    (c = 3) are coloured, others shown as the mean over their input maps."""
    n, c, kh, kw = kernels.shape
    rows = math.ceil(n / cols)
    pictures = kernels.transpose(0, 2, 3, 1) if c == 3 else kernels.mean(1, keepdims=True).transpose(0, 2, 3, 1)
    lo = pictures.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(pictures.max(axis=(1, 2, 3), keepdims=True) - lo, 1e-12)
    pictures = (pictures - lo) / span
    out = np.ones((rows * (kh + 1) - 1, cols * (kw + 1) - 1, pictures.shape[-1]))
    for i, k in enumerate(pictures):
        r, q = divmod(i, cols)
        out[r * (kh + 1):r * (kh + 1) + kh, q * (kw + 1):q * (kw + 1) + kw] = k
    return out if c == 3 else out[..., 0]


def conv1_kernels(model: Any, path: str | Path, title: str = "") -> Path:
    """The first layer's kernels as a grid, as the paper's figure 3 shows AlexNet's 96:
    when the next layer is grouped (the paper's two GPUs), each group's kernels in a panel
    of its own, side by side (the paper saw colour-agnostic kernels on one GPU and
    colour-specific ones on the other)."""
    weights, groups = first_conv(model)
    per_group = len(weights) // groups
    cols = max(1, math.ceil(math.sqrt(per_group * 4 / 3)))
    fig, axes = plt.subplots(1, groups, figsize=(4.5 * groups, 4), squeeze=False)
    for g, ax in enumerate(axes[0]):
        mosaic = kernel_mosaic(weights[g * per_group:(g + 1) * per_group], cols)
        ax.imshow(mosaic, interpolation="nearest", cmap=None if mosaic.ndim == 3 else "gray")
        ax.set_axis_off()
        first, last = g * per_group + 1, (g + 1) * per_group
        ax.set_title(f"kernels {first}-{last}" + (f" (group {g + 1} of {groups}: GPU {g + 1} in the paper)"
                                                  if groups > 1 else f", {weights.shape[2]}x{weights.shape[3]}"
                                                  f"x{weights.shape[1]}"), fontsize="small")
    fig.suptitle(title or "first-layer kernels")
    return save(fig, path)


def top5_figure(images: list[np.ndarray], top5_names: list[list[str]], top5_probs: list[list[float]],
                true_names: list[str], path: str | Path, title: str = "") -> Path:
    """The left half of the paper's figure 4: each validation image with its true class
    under it and the network's five most probable classes as bars, the true class's bar
    red when it is among them."""
    cols = min(4, len(images))
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(3.2 * cols, 4.2 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2] * rows})
    for ax in axes.flat:
        ax.set_axis_off()
    for n, (image, names, probs, truth) in enumerate(zip(images, top5_names, top5_probs, true_names, strict=True)):
        r, c = divmod(n, cols)
        top, bars = axes[2 * r, c], axes[2 * r + 1, c]
        top.imshow(image)
        top.set_title(truth, fontsize="small", fontweight="bold")
        bars.set_axis_on()
        colours = ["tab:red" if name == truth else "tab:blue" for name in names]
        bars.barh(range(len(probs)), probs, color=colours)
        bars.set_yticks(range(len(names)), [name[:24] for name in names], fontsize="x-small")
        bars.invert_yaxis()
        bars.set_xlim(0, 1)
        bars.tick_params(axis="x", labelsize="x-small")
    fig.suptitle(textwrap.fill(title or "top-5 predictions", 30 * cols), fontsize="medium")
    return save(fig, path)


def retrieval_figure(queries: np.ndarray, neighbours: np.ndarray, query_names: list[str],
                     neighbour_names: list[list[str]], path: str | Path, title: str = "") -> Path:
    """The right half of the paper's figure 4: each validation image (first column) and
    the training images nearest to it by the last hidden layer, nearest first."""
    rows, k = neighbours.shape[:2]
    fig, axes = plt.subplots(rows, k + 1, figsize=(1.9 * (k + 1), 2.1 * rows), squeeze=False)
    for r in range(rows):
        axes[r, 0].imshow(queries[r])
        axes[r, 0].set_title(f"query: {query_names[r]}"[:28], fontsize="x-small", fontweight="bold")
        for j in range(k):
            axes[r, j + 1].imshow(neighbours[r, j])
            axes[r, j + 1].set_title(neighbour_names[r][j][:22], fontsize="x-small")
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(textwrap.fill(title or "nearest training images", 16 * (k + 1)), fontsize="medium")
    return save(fig, path)
