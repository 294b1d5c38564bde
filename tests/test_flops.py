import pytest
from torch import nn

from alexnet.flops import bf16_peak_tflops, forward_flops_per_image, peak_fraction, training_flops_per_image
from alexnet.model import AlexNet


@pytest.mark.parametrize("grouped, gmac", [(True, 0.72), (False, 1.14)])
def test_forward_cost_matches_the_reference(grouped: bool, gmac: float) -> None:
    """About 0.72 GMAC grouped (the figure usually quoted for the paper's network), 1.14 ungrouped."""
    macs = forward_flops_per_image(AlexNet(1000, grouped=grouped)) / 2
    assert macs == pytest.approx(gmac * 1e9, rel=0.01)


def test_training_step_is_forward_plus_both_gradients_except_the_images() -> None:
    a, b, c = 3 * 8 * 8, 4, 2
    net = nn.Sequential(nn.Flatten(), nn.Linear(a, b), nn.ReLU(), nn.Linear(b, c))
    # forward 2ab + 2bc; backward: weight gradients 2ab + 2bc, input gradient of layer 2 only
    assert training_flops_per_image(net, image_size=8) == 4 * a * b + 6 * b * c


def test_grouped_training_step_costs_less_than_ungrouped() -> None:
    grouped, ungrouped = (training_flops_per_image(AlexNet(1000, grouped=g)) for g in (True, False))
    assert 3.9e9 < grouped < ungrouped < 7e9


@pytest.mark.parametrize("name, tflops", [("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0),
                                          ("NVIDIA H200", 989.4), ("NVIDIA A100-SXM4-80GB", 312.0),
                                          ("NVIDIA GeForce GTX 1080", None)])
def test_bf16_peak_by_device_name(name: str, tflops: float | None) -> None:
    assert bf16_peak_tflops(name) == tflops


def test_peak_fraction() -> None:
    assert peak_fraction(10_000, 4e9, 100.0) == pytest.approx(0.4)
