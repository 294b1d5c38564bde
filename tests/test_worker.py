"""What a training worker reports and restores, without Ray: its epoch metrics, its checkpoint."""

import pytest
import torch
from torch import nn

from alexnet import checkpoint as ckpt
from alexnet.config import TrainConfig
from alexnet.engine import EpochStats
from alexnet.optim import build_optimizer, set_lr
from alexnet.schedule import LRSchedule
from alexnet.worker import checkpoint_state, epoch_metrics, restore_progress


def test_validation_errors_count_images_skipped_at_preparation_as_wrong() -> None:
    train = EpochStats(loss_sum=12.0, images=6, bad_images=0, correct=4, wait_s=1.0, total_s=4.0)
    # top-1, top-5 correct, images, undecodable (1, an error: it counts in the images), loss sum
    counts = torch.tensor([6.0, 7.0, 8.0, 1.0, 3.5], dtype=torch.float64)
    m = epoch_metrics(train, counts, lr=0.01, epoch_s=2.0, device=torch.device("cpu"), val_skipped=2)
    assert m["val_top1_err"] == pytest.approx(100 * (1 - 6 / 10))  # 8 scored + 2 skipped
    assert m["val_top5_err"] == pytest.approx(100 * (1 - 7 / 10))
    assert (m["val_images"], m["val_skipped"]) == (8, 2)
    assert m["val_loss"] == pytest.approx(3.5 / 7)  # over the 7 images that decoded
    assert m["train_loss"] == pytest.approx(2.0) and m["input_stall_frac"] == pytest.approx(0.25)
    assert m["train_top1_err"] == pytest.approx(100 * (1 - 4 / 6))


def test_a_resumed_run_goes_on_exactly_as_an_uninterrupted_one(tmp_path) -> None:
    """Weights, momentum buffers, per-group lrs and the schedule come back from checkpoint.pt,
    and the next step (after an lr drop, where the paper's momentum rule rescales the
    buffers) is bit for bit the uninterrupted run's."""
    cfg = TrainConfig(lr=0.1, lr_schedule="step", lr_steps=(1,))
    x, y = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 1])

    def start(seed: int):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))
        optimizer = build_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.bias_lr_mult, cfg.bias_decay)
        return model, optimizer, LRSchedule(cfg.lr, cfg.lr_schedule, steps=cfg.lr_steps)

    def epoch(model, optimizer, schedule, e: int, steps: int) -> None:
        set_lr(optimizer, schedule.lr(e), cfg.momentum_rule)
        for _ in range(steps):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        schedule.observe(50.0 - e)

    model, optimizer, schedule = start(seed=0)
    epoch(model, optimizer, schedule, 0, steps=3)
    path = tmp_path / "checkpoint.pt"
    ckpt.save(path, checkpoint_state(model, optimizer, schedule, 0, [{"val_top1_err": 50.0}], cfg, 3, [0, 0, 0]))

    state = ckpt.load(path, "test run")
    resumed, resumed_opt, resumed_schedule = start(seed=1)  # other initial weights, no momentum
    ckpt.load_weights(resumed, state["model"], "test run")
    assert restore_progress(state, resumed_opt, resumed_schedule) == (1, [{"val_top1_err": 50.0}])
    assert resumed_schedule.state_dict() == schedule.state_dict()
    for a, b in zip(optimizer.param_groups, resumed_opt.param_groups, strict=True):
        assert a["lr"] == b["lr"] and a["weight_decay"] == b["weight_decay"]
        for p, q in zip(a["params"], b["params"], strict=True):
            assert torch.equal(p, q)
            assert torch.equal(optimizer.state[p]["momentum_buffer"], resumed_opt.state[q]["momentum_buffer"])

    epoch(model, optimizer, schedule, 1, steps=1)
    epoch(resumed, resumed_opt, resumed_schedule, 1, steps=1)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), resumed.parameters(), strict=True))
