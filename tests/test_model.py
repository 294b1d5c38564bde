import pytest
import torch
from torch import nn

from alexnet import AlexNet
from alexnet.model import count_parameters, local_response_norm


@pytest.mark.parametrize("grouped, expected", [(True, 60_965_224), (False, 62_378_344)])
def test_parameter_counts_match_the_paper(grouped: bool, expected: int) -> None:
    assert count_parameters(AlexNet(1000, grouped=grouped)) == expected


@pytest.mark.parametrize("grouped", [True, False])
def test_output_shapes(grouped: bool) -> None:
    model = AlexNet(num_classes=10, grouped=grouped).eval()
    x = torch.zeros(2, 3, 224, 224)
    conv1 = model.features[0](x)
    assert conv1.shape == (2, 96, 55, 55)  # the paper's figure 2 from a 224 input
    assert model.features(x).shape == (2, 256, 6, 6)
    assert model(x).shape == (2, 10)


def test_conv2_4_5_are_split_in_two_groups() -> None:
    convs = [m for m in AlexNet(10).features if isinstance(m, nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert [c.groups for c in AlexNet(10, grouped=False).features if isinstance(c, nn.Conv2d)] == [1] * 5


def paper_lrn(a: torch.Tensor, k=2.0, n=5, alpha=1e-4, beta=0.75) -> torch.Tensor:
    """Section 3.3, written out: b_i = a_i / (k + alpha * sum_{j=i-n/2}^{i+n/2} a_j^2)^beta."""
    channels = a.shape[1]
    out = torch.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        s = (a[:, lo:hi + 1] ** 2).sum(1)
        out[:, i] = a[:, i] / (k + alpha * s) ** beta
    return out


def test_lrn_follows_the_papers_formula() -> None:
    torch.manual_seed(0)
    a = torch.rand(2, 12, 5, 5, dtype=torch.float64) * 40  # post-ReLU magnitudes, where LRN bites
    assert torch.allclose(local_response_norm("paper")(a), paper_lrn(a), rtol=1e-6)
    assert torch.allclose(local_response_norm("cuda-convnet")(a), paper_lrn(a, alpha=1e-4 / 5), rtol=1e-6)
    assert not torch.allclose(local_response_norm("cuda-convnet")(a), paper_lrn(a), rtol=1e-3)


def test_paper_initialisation() -> None:
    torch.manual_seed(0)
    model = AlexNet(1000)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [float(m.bias[0]) for m in layers] == [0, 1, 0, 1, 1, 1, 1, 0]
    for m in layers:
        assert abs(float(m.weight.std()) - 0.01) < 0.002
    caffe = [m for m in AlexNet(1000, bias_init="caffe").modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [float(m.bias[0]) for m in caffe] == pytest.approx([0, 0.1, 0, 0.1, 0.1, 0.1, 0.1, 0])
    assert abs(float(caffe[5].weight.std()) - 0.005) < 0.001


def test_dropout_only_in_training() -> None:
    model = AlexNet(10)
    x = torch.randn(4, 3, 224, 224)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))
