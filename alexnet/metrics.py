"""Top-k error as the paper reports it, built from counts so that workers can sum them."""

from __future__ import annotations

import torch


def topk_correct(scores: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5),
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """How many rows have the target among their k highest scores, for each k."""
    maxk = min(max(ks), scores.shape[1])
    top = scores.topk(maxk, dim=1).indices
    hit = top == target.view(-1, 1)
    if mask is not None:
        hit = hit & mask.view(-1, 1)
    return torch.stack([hit[:, :min(k, maxk)].any(1).sum() for k in ks]).to(torch.float64)


def error_percent(correct: float, total: float) -> float:
    return 100.0 * (1.0 - correct / total) if total else float("nan")
