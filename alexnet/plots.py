"""Pictures people would rather look at than read: the training curves of a run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
