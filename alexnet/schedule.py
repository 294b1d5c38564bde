"""Learning-rate schedule, per epoch: the paper's "divide by 10 when validation error
stops improving", or fixed steps as reproductions use, with an optional warm-up. Other
networks' recipes drop by other factors (GoogLeNet: 4% every 8 epochs)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

FACTOR = 0.1


@dataclass
class LRSchedule:
    base_lr: float
    kind: str = "plateau"  # or "step"
    patience: int = 3  # plateau: non-improving epochs in a row that trigger a division
    max_drops: int = 0  # plateau: most divisions (the paper: three); 0 = no limit
    steps: tuple[int, ...] = ()
    warmup_epochs: int = 0
    factor: float = FACTOR  # each drop multiplies the lr by this (GoogLeNet's recipe: 0.96)
    divisions: int = 0  # plateau: how often the lr has been divided so far
    best: float = math.inf
    epochs_since_best: int = 0

    def lr(self, epoch: int) -> float:
        """Learning rate for `epoch` (0-based)."""
        n = self.divisions if self.kind == "plateau" else sum(epoch >= s for s in self.steps)
        lr = self.base_lr * self.factor**n
        if epoch < self.warmup_epochs:  # linear from lr/10 to lr
            lr *= 0.1 + 0.9 * epoch / self.warmup_epochs
        return lr

    def observe(self, val_top1_err: float) -> None:
        """Feed the epoch's validation error. Under the plateau rule, the `patience`-th
        epoch in a row that does not beat the best divides the lr (unless `max_drops`
        divisions have been made), and the count starts again."""
        if val_top1_err < self.best:
            self.best, self.epochs_since_best = val_top1_err, 0
            return
        self.epochs_since_best += 1
        capped = self.max_drops and self.divisions >= self.max_drops
        if self.kind == "plateau" and self.epochs_since_best >= self.patience and not capped:
            self.divisions += 1
            self.epochs_since_best = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for k in ("divisions", "best", "epochs_since_best"):
            setattr(self, k, state[k])
