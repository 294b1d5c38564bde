"""The pictures' contents: which kernels the first-layer figure shows, and in which panels."""

from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet import models
from alexnet.model import AlexNet
from alexnet.plots import conv1_kernels, first_conv, kernel_mosaic


@pytest.mark.parametrize("net, shape, groups", [
    (AlexNet(10), (96, 3, 11, 11), 2),  # conv2 reads each GPU's 48 maps: two panels, as figure 3
    (AlexNet(10, grouped=False), (96, 3, 11, 11), 1),
    (models.build("lenet5", 3), (6, 1, 5, 5), 1),  # inside its input resize
    (models.build("resnet18", 3), (64, 3, 7, 7), 1),
])
def test_the_first_layer_and_its_groups(net: torch.nn.Module, shape: tuple, groups: int, tmp_path: Path) -> None:
    weights, found = first_conv(net)
    assert weights.shape == shape and found == groups
    assert conv1_kernels(net, tmp_path / "k.png").read_bytes()[:4] == b"\x89PNG"


def test_each_kernel_is_scaled_on_its_own_and_placed_in_its_cell() -> None:
    kernels = np.stack([np.full((3, 2, 2), v) + np.arange(4).reshape(1, 2, 2) for v in (0.0, 100.0, -5.0)])
    mosaic = kernel_mosaic(kernels, cols=2)
    assert mosaic.shape == (2 * 3 - 1, 2 * 3 - 1, 3)
    for r, q in ((0, 0), (0, 3), (3, 0)):  # the three kernels' cells: each spans 0..1 whatever its magnitude
        cell = mosaic[r:r + 2, q:q + 2, 0]
        assert cell.min() == 0.0 and cell.max() == 1.0
    assert (mosaic[3:5, 3:5] == 1).all()  # the empty fourth cell stays white
