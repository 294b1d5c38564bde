"""Pictures people would rather look at than read: a run's training curves and its first
layer's kernels, a sweep's trials side by side, an ensemble's error as members are added,
a comparison's variants against their training time, an ablation study's overfitting."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

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
