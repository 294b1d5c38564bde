"""The epoch's metrics as a worker reports them (one rank, no process group)."""

import pytest
import torch

from alexnet.engine import EpochStats
from alexnet.worker import epoch_metrics


def test_validation_errors_count_images_skipped_at_preparation_as_wrong() -> None:
    train = EpochStats(loss_sum=12.0, images=6, bad_images=0, wait_s=1.0, total_s=4.0)
    counts = torch.tensor([6.0, 8.0, 8.0, 0.0], dtype=torch.float64)  # top-1, top-5 correct, images, undecodable
    m = epoch_metrics(train, counts, lr=0.01, epoch_s=2.0, device=torch.device("cpu"), val_skipped=2)
    assert m["val_top1_err"] == pytest.approx(100 * (1 - 6 / 10))  # 8 scored + 2 skipped
    assert m["val_top5_err"] == pytest.approx(100 * (1 - 8 / 10))
    assert (m["val_images"], m["val_skipped"]) == (8, 2)
    assert m["train_loss"] == pytest.approx(2.0) and m["input_stall_frac"] == pytest.approx(0.25)
