import torch

from alexnet.metrics import error_percent, topk_correct


def test_topk_counts_hits_and_respects_the_mask() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5]])
    target = torch.tensor([1, 1, 0])
    assert topk_correct(scores, target, ks=(1, 2, 3)).tolist() == [1, 2, 3]
    mask = torch.tensor([True, False, True])
    assert topk_correct(scores, target, ks=(1, 2), mask=mask).tolist() == [1, 1]


def test_top5_with_fewer_than_five_classes_counts_everything() -> None:
    scores = torch.rand(4, 3)
    assert topk_correct(scores, torch.tensor([0, 1, 2, 0])).tolist() == [
        float((scores.argmax(1) == torch.tensor([0, 1, 2, 0])).sum()), 4.0]


def test_error_percent() -> None:
    assert error_percent(75, 100) == 25.0


def test_top5_misses_a_target_ranked_sixth() -> None:
    """With more than five classes top-5 can be wrong: targets ranked 1st, 5th and 6th."""
    scores = torch.tensor([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]] * 3)  # class 6 ranks first, class 0 last
    target = torch.tensor([6, 2, 1])
    assert topk_correct(scores, target).tolist() == [1.0, 2.0]
