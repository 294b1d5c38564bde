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


def test_classifier_is_the_papers_fc6_relu_dropout_fc7_relu_dropout_fc8() -> None:
    names = [(name, type(m).__name__) for name, m in AlexNet(10).classifier.named_children()]
    assert names == [("flatten", "Flatten"), ("fc6", "Linear"), ("relu6", "ReLU"), ("drop6", "Dropout"),
                     ("fc7", "Linear"), ("relu7", "ReLU"), ("drop7", "Dropout"), ("fc8", "Linear")]


def test_dropout_zeroes_fc7s_output_and_never_pool5() -> None:
    torch.manual_seed(0)
    model = AlexNet(10, bias_init="caffe").train()
    seen: dict[str, torch.Tensor] = {}
    c = model.classifier
    c.fc6.register_forward_hook(lambda m, inp, out: seen.update(fc6_in=inp[0].clone()))
    c.relu7.register_forward_hook(lambda m, inp, out: seen.update(fc7_out=out.clone()))
    c.fc8.register_forward_hook(lambda m, inp, out: seen.update(fc8_in=inp[0].clone()))
    x = torch.randn(4, 3, 224, 224) * 50
    model(x)
    pool5 = model.features(x).flatten(1)
    assert torch.equal(seen["fc6_in"], pool5)  # pool5 reaches fc6 whole
    alive = seen["fc7_out"] > 0
    dropped = alive & (seen["fc8_in"] == 0)
    assert 0.4 < dropped.sum() / alive.sum() < 0.6  # half of fc7's active outputs are zeroed...
    kept = alive & ~dropped
    assert torch.allclose(seen["fc8_in"][kept], 2 * seen["fc7_out"][kept])  # ...the rest scaled by 1/(1-p)


def test_dropout_only_in_training() -> None:
    model = AlexNet(10)
    x = torch.randn(4, 3, 224, 224)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("convention, beta", [("paper", 0.75), ("cuda-convnet", 0.75), ("paper", 0.5)])
def test_lrn_hand_written_backward_matches_numerical_gradients(convention: str, beta: float) -> None:
    """`_LRNFunction.backward` is derived by hand; autograd never checks it. gradcheck
    compares it with central differences of the forward, in float64, on inputs large
    enough (|a| ~ 40, as after conv1's ReLU) that the cross-channel term matters.
    beta 0.5 takes the forward's general pow branch instead of the 0.75 rsqrt one."""
    torch.manual_seed(0)
    lrn = local_response_norm(convention)
    lrn.beta = beta
    a = (torch.randn(2, 7, 3, 3, dtype=torch.float64) * 40).requires_grad_()
    assert torch.autograd.gradcheck(lrn, (a,), eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("convention, n_alpha", [("paper", 5e-4), ("cuda-convnet", 1e-4)])
def test_lrn_equals_pytorchs_in_values_and_gradients(convention: str, n_alpha: float) -> None:
    """The same function as nn.LocalResponseNorm(5, n * alpha, 0.75, 2), to float64 rounding."""
    torch.manual_seed(0)
    a = (torch.randn(2, 12, 5, 5, dtype=torch.float64) * 40).requires_grad_()
    ours, ref = local_response_norm(convention)(a), nn.LocalResponseNorm(5, n_alpha, 0.75, 2.0)(a)
    assert torch.allclose(ours, ref, rtol=1e-12, atol=0)
    g = torch.randn_like(ours)
    (g_ours,), (g_ref,) = torch.autograd.grad(ours, a, g), torch.autograd.grad(ref, a, g)
    assert torch.allclose(g_ours, g_ref, rtol=1e-12, atol=1e-14)


def convs_of(model: AlexNet) -> list[nn.Conv2d]:
    return [m for m in model.features if isinstance(m, nn.Conv2d)]


def test_each_ablation_switch_changes_only_its_own_part_and_keeps_the_layer_names() -> None:
    """The switches of the paper's ablations (docs/ablations.md), each against the paper's
    network: a checkpoint of any of them names its layers as the paper's network does."""
    paper = AlexNet(10)
    keys = list(paper.state_dict())
    x = torch.rand(2, 3, 224, 224)

    tanh = AlexNet(10, activation="tanh")
    assert not any(isinstance(m, nn.ReLU) for m in tanh.modules())
    assert sum(isinstance(m, nn.Tanh) for m in tanh.modules()) == 7  # conv1-5, fc6, fc7
    no_lrn = AlexNet(10, lrn="none")
    assert sum(isinstance(m, type(paper.features[2])) for m in no_lrn.modules()) == 0
    plain = AlexNet(10, pooling="plain")
    assert [(m.kernel_size, m.stride) for m in plain.features if isinstance(m, nn.MaxPool2d)] == [(2, 2)] * 3
    for variant in (tanh, no_lrn, plain):
        assert list(variant.state_dict()) == keys and count_parameters(variant) == count_parameters(paper)
        assert variant.features(x).shape == (2, 256, 6, 6)  # the same maps: 55 -> 27 -> 13 -> 6

    no_conv3, no_conv4 = AlexNet(10, remove_conv=3), AlexNet(10, remove_conv=4)
    assert [(c.in_channels, c.out_channels) for c in convs_of(no_conv3)] == [(3, 96), (96, 256), (256, 384),
                                                                             (384, 256)]
    assert [(c.in_channels, c.out_channels) for c in convs_of(no_conv4)] == [(3, 96), (96, 256), (256, 384),
                                                                             (384, 256)]
    assert "features.8.weight" not in no_conv3.state_dict() and "features.10.weight" not in no_conv4.state_dict()
    assert set(no_conv3.state_dict()) < set(keys) and no_conv3(x).shape == no_conv4(x).shape == (2, 10)


def test_the_half_kernel_net_is_section_3_2s_one_gpu_net() -> None:
    """Half the kernels in conv1-4; conv5 and the fully connected layers kept (the paper's
    footnote), on one device."""
    half = AlexNet(1000, kernels="half", grouped=False)
    assert [(c.out_channels, c.groups) for c in convs_of(half)] == [(48, 1), (128, 1), (192, 1), (192, 1), (256, 1)]
    by_hand = (3 * 48 * 121 + 48) + (48 * 128 * 25 + 128) + (128 * 192 * 9 + 192) + (192 * 192 * 9 + 192) \
        + (192 * 256 * 9 + 256) + (9216 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert count_parameters(half) == by_hand
    assert half(torch.rand(2, 3, 224, 224)).shape == (2, 1000)


def test_the_switches_are_training_flags_that_reach_the_network() -> None:
    from alexnet import cli
    from alexnet.config import TrainConfig
    from alexnet.recipe import build_model, model_args

    cfg = cli.parse(TrainConfig, "", ["--activation", "tanh", "--lrn", "none", "--pooling", "plain",
                                      "--remove-conv", "4", "--kernels", "half", "--no-grouped"])
    args = model_args(cfg, 10)
    assert {k: args[k] for k in ("activation", "lrn", "pooling", "remove_conv", "kernels", "grouped")} == {
        "activation": "tanh", "lrn": "none", "pooling": "plain", "remove_conv": 4, "kernels": "half",
        "grouped": False}
    net = build_model(cfg, 10)
    assert [c.out_channels for c in convs_of(net)] == [48, 128, 192, 256]
    assert isinstance(net.features[1], nn.Tanh) and isinstance(net.features[2], nn.Identity)
    with pytest.raises(Exception, match="--remove-conv must be 0 \\(none\\), 3 or 4"):
        TrainConfig(remove_conv=2)
