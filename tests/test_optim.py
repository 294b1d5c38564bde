import pytest
import torch
from torch import nn

from alexnet.model import AlexNet
from alexnet.optim import build_optimizer, parameter_groups, set_lr

MOMENTUM, DECAY = 0.9, 5e-4
SCHEDULE = [0.01, 0.04, 0.07] + [0.1] * 6 + [0.01] * 6 + [0.001] * 4  # a warm-up, then two divisions by 10


def grad_of(w: torch.Tensor, step: int) -> torch.Tensor:
    """A fixed, weight-dependent gradient, the same for both implementations."""
    return torch.sin(w * (step + 1)) + 0.1 * w


def papers_equations(w0: torch.Tensor, bias_lr_mult: float = 1.0) -> torch.Tensor:
    """Section 5, written out: v <- 0.9 v - 0.0005 eps w - eps grad; w <- w + v (rows 0..1
    are weights; row 2 is a bias with its own eps and no decay, as in cuda-convnet)."""
    w, v = w0.clone(), torch.zeros_like(w0)
    for step, eps in enumerate(SCHEDULE):
        g = grad_of(w, step)
        eps_rows = torch.tensor([eps, eps, eps * bias_lr_mult], dtype=w.dtype).view(3, 1)
        decay_rows = torch.tensor([DECAY, DECAY, 0.0], dtype=w.dtype).view(3, 1)
        v = MOMENTUM * v - decay_rows * eps_rows * w - eps_rows * g
        w = w + v
    return w


class Toy(nn.Module):
    def __init__(self, w0: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(w0[:2].clone())
        self.bias = nn.Parameter(w0[2:].clone())

    def full(self) -> torch.Tensor:
        return torch.cat([self.weight, self.bias])


def torch_sgd(w0: torch.Tensor, rule: str, bias_lr_mult: float = 1.0) -> torch.Tensor:
    model = Toy(w0)
    opt = build_optimizer(model, SCHEDULE[0], MOMENTUM, DECAY, bias_lr_mult=bias_lr_mult, bias_decay=False)
    for step, eps in enumerate(SCHEDULE):
        set_lr(opt, eps, rule)
        g = grad_of(model.full().detach(), step)
        model.weight.grad, model.bias.grad = g[:2].clone(), g[2:].clone()
        opt.step()
    return model.full().detach()


@pytest.mark.parametrize("bias_lr_mult", [1.0, 2.0])
def test_paper_rule_follows_the_papers_equations_across_lr_drops(bias_lr_mult: float) -> None:
    w0 = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = papers_equations(w0, bias_lr_mult)
    assert torch.allclose(torch_sgd(w0, "paper", bias_lr_mult), expected, rtol=0, atol=1e-12)
    # PyTorch's rule is the same while eps is constant and differs after a drop.
    assert not torch.allclose(torch_sgd(w0, "pytorch", bias_lr_mult), expected, rtol=0, atol=1e-6)


def test_biases_get_their_own_lr_and_no_decay_by_name() -> None:
    model = AlexNet(10)
    weights, biases = parameter_groups(model, 5e-4, bias_lr_mult=2.0, bias_decay=False)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith("bias") for p in biases["params"]) and len(biases["params"]) == 8
    assert all(names[id(p)].endswith("weight") for p in weights["params"]) and len(weights["params"]) == 8
    assert (weights["weight_decay"], biases["weight_decay"]) == (5e-4, 0.0)
    opt = build_optimizer(model, 0.01, 0.9, 5e-4, bias_lr_mult=2.0, bias_decay=False)
    set_lr(opt, 0.001)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.001, 0.002])
    decayed = build_optimizer(model, 0.01, 0.9, 5e-4, bias_lr_mult=1.0, bias_decay=True)
    assert [g["weight_decay"] for g in decayed.param_groups] == [5e-4, 5e-4]
