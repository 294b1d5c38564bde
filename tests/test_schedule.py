import pytest

from alexnet.schedule import LRSchedule


def run(s: LRSchedule, errors: list[float]) -> list[float]:
    lrs = []
    for epoch, err in enumerate(errors):
        lrs.append(s.lr(epoch))
        s.observe(err)
    return lrs


def test_plateau_divides_by_ten_on_the_patience_th_epoch_without_improvement() -> None:
    # --lr-patience 2: the second epoch in a row that does not beat the best (42 at epoch 3)
    # divides the lr for epoch 4; the count starts again, and 39.5, 40 divide it once more.
    lrs = run(LRSchedule(0.01, "plateau", patience=2), [50, 40, 41, 42, 43, 39, 39.5, 40, 41])
    assert lrs == pytest.approx([0.01] * 4 + [0.001] * 4 + [0.0001])


def test_plateau_stops_dividing_after_max_drops() -> None:
    flat = [50.0] * 8
    assert run(LRSchedule(1.0, "plateau", patience=1, max_drops=3), flat) == pytest.approx(
        [1, 1, 0.1, 0.01, 0.001, 0.001, 0.001, 0.001])
    assert run(LRSchedule(1.0, "plateau", patience=1, max_drops=0), flat)[-1] == pytest.approx(1e-6)


def test_step_schedule_and_warmup() -> None:
    s = LRSchedule(0.1, "step", steps=(2, 4), warmup_epochs=2)
    assert [s.lr(e) for e in range(6)] == pytest.approx([0.01, 0.055, 0.01, 0.01, 0.001, 0.001])


def test_state_round_trip() -> None:
    a = LRSchedule(0.01, "plateau", patience=1)
    a.observe(10)
    a.observe(11)
    b = LRSchedule(0.01, "plateau", patience=1)
    b.load_state_dict(a.state_dict())
    assert b.lr(5) == a.lr(5) == pytest.approx(0.001)
