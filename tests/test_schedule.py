import pytest

from alexnet.schedule import LRSchedule


def test_plateau_divides_by_ten_after_patience_epochs_without_improvement() -> None:
    s = LRSchedule(0.01, "plateau", patience=2)
    lrs = []
    for epoch, err in enumerate([50, 40, 41, 42, 43, 39, 39.5, 40, 41]):
        lrs.append(s.lr(epoch))
        s.observe(err)
    assert lrs == pytest.approx([0.01] * 5 + [0.001] * 4)


def test_step_schedule_and_warmup() -> None:
    s = LRSchedule(0.1, "step", steps=(2, 4), warmup_epochs=2)
    assert [s.lr(e) for e in range(6)] == pytest.approx([0.01, 0.055, 0.01, 0.01, 0.001, 0.001])


def test_state_round_trip() -> None:
    a = LRSchedule(0.01, "plateau", patience=0)
    a.observe(10)
    a.observe(11)
    b = LRSchedule(0.01, "plateau", patience=0)
    b.load_state_dict(a.state_dict())
    assert b.lr(5) == a.lr(5) == pytest.approx(0.001)
