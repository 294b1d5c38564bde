"""The registry of networks: every name builds, the parameter counts of their papers and
of torchvision, the layers written here to their papers (LeNet-5, ZFNet), GoogLeNet's
auxiliary loss, the parameter groups, and each network's recipe reaching the config."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet import models
from alexnet.config import PRESETS, TrainConfig, train_config_for
from alexnet.engine import step_loss
from alexnet.errors import UserError
from alexnet.model import AlexNet
from alexnet.models.lenet import LeNet5
from alexnet.models.zfnet import ZFNet
from alexnet.optim import parameter_groups
from alexnet.schedule import LRSchedule

NAMES = ["lenet5", "alexnet", "zfnet", "vgg11", "vgg16", "vgg19", "googlenet", "resnet18", "resnet34", "resnet50",
         "resnet101", "resnet152", "wide_resnet50_2", "resnext50_32x4d"]


def parameters(model: nn.Module, skip: tuple[str, ...] = ()) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if p.requires_grad and not name.startswith(skip))


def test_the_registry_holds_exactly_the_documented_names() -> None:
    assert models.names() == NAMES


@pytest.mark.parametrize("name, expected", [
    ("alexnet", 60_965_224),  # the paper's, grouped
    ("vgg16", 138_357_544),
    ("vgg19", 143_667_240),
    ("resnet50", 25_557_032),
    ("resnet18", 11_689_512),
    ("zfnet", 62_357_608),  # figure 3's layers summed by hand: conv 14,208 + 614,656 + 885,120 + 1,327,488 + 884,992
                            # and fc 37,752,832 + 16,781,312 + 4,097,000
])
def test_parameter_counts_for_1000_classes(name: str, expected: int) -> None:
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        assert parameters(models.build(name, 1000)) == expected


def test_googlenet_without_its_auxiliary_heads_has_torchvision_s_count() -> None:
    with torch.device("meta"):
        net = models.build("googlenet", 1000)
    assert parameters(net, skip=("aux1.", "aux2.")) == 6_624_904
    assert parameters(net) > 6_624_904  # the heads are there, for training


def test_lenet5_has_the_paper_s_60000_trainable_parameters_whatever_the_classes() -> None:
    for classes in (10, 1000):
        assert parameters(models.build("lenet5", classes)) == 60_000  # section II.B; the RBF centres are fixed


# The paper's Table I as printed: row i is S2 map i, column j is C3 map j, X a connection.
TABLE_I = """
X...XXX..XXXX.XX
XX...XXX..XXXX.X
XXX...XXX..X.XXX
.XXX..XXXX..X.XX
..XXX..XXXX.XX.X
...XXX..XXXX.XXX
""".split()


def test_lenet5_c3_reads_the_s2_maps_of_table_1_only() -> None:
    net = LeNet5(10)
    x = torch.randn(1, 6, 14, 14, requires_grad=True)
    out = net.c3(x)
    assert out.shape == (1, 16, 10, 10)
    for j in range(16):
        (grad,) = torch.autograd.grad(out[0, j].sum(), x, retain_graph=True)
        reached = [i for i in range(6) if grad[0, i].abs().sum() > 0]
        assert reached == [i for i in range(6) if TABLE_I[i][j] == "X"], j
    assert parameters(net.c3) == 1_516


def test_lenet5_maps_have_the_paper_s_sizes_and_it_takes_the_pipeline_s_224_crops() -> None:
    net = LeNet5(10).eval()
    x = torch.randn(2, 1, 32, 32)
    c1 = net.c1(x)
    assert c1.shape[-2:] == (28, 28) and net.s2(c1).shape[-2:] == (14, 14)
    assert net.c5(torch.randn(2, 16, 5, 5)).shape == (2, 120, 1, 1)
    wrapped = models.build("lenet5", 10)
    assert isinstance(wrapped, models.ResizeInput) and wrapped.size == 32
    crops = torch.rand(2, 3, 224, 224) * 255 - 127
    assert wrapped.eval()(crops).shape == (2, 10)
    small = F.interpolate(crops, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(wrapped(crops), wrapped.net(small))  # resized on the device, inside the network


def test_only_networks_whose_input_is_not_224_pay_for_a_resize() -> None:
    for name in NAMES:
        with torch.device("meta"):
            net = models.build(name, 10)
        assert isinstance(net, models.ResizeInput) == (models.get(name).input_size != 224), name
    assert type(models.build("alexnet", 10)) is AlexNet  # exactly today's network: same speed, same weights


def test_zfnet_maps_have_figure_3_s_sizes() -> None:
    net = ZFNet(10).eval()
    sizes, x = [], torch.randn(1, 3, 224, 224)
    for layer in net.features:
        x = layer(x)
        if isinstance(layer, nn.Conv2d | nn.MaxPool2d):
            sizes.append(x.shape[-1])
    assert sizes == [110, 55, 26, 13, 13, 13, 13, 6]
    assert [m.out_channels for m in net.features if isinstance(m, nn.Conv2d)] == [96, 256, 384, 384, 256]
    assert [(m.kernel_size, m.stride) for m in net.features if isinstance(m, nn.Conv2d)][:2] == [((7, 7), (2, 2)),
                                                                                                 ((5, 5), (2, 2))]


def test_googlenet_trains_with_its_auxiliary_losses_at_0_3_and_evaluates_without_them() -> None:
    torch.manual_seed(0)
    net = models.build("googlenet", 3, input_size=64).train()
    x, y = torch.rand(4, 3, 224, 224) * 255 - 127, torch.tensor([0, 1, 2, 1])
    valid = torch.tensor([True, True, False, True])
    torch.manual_seed(1)
    loss, summed, n, correct = step_loss(net, x, y, valid, torch.device("cpu"), amp=False,
                                aux_weight=models.get("googlenet").aux_loss_weight)
    torch.manual_seed(1)  # the same dropout masks
    main, aux2, aux1 = net(x)
    by_hand = (F.cross_entropy(main, y, reduction="none") + 0.3 * F.cross_entropy(aux1, y, reduction="none")
               + 0.3 * F.cross_entropy(aux2, y, reduction="none"))[valid]
    assert int(n) == 3 and torch.allclose(summed, by_hand.sum()) and torch.allclose(loss, by_hand.mean())
    assert int(correct) == int((main.argmax(1) == y)[valid].sum())  # the main classifier's training error
    with pytest.raises(ValueError, match="auxiliary logits"):
        step_loss(net, x, y, valid, torch.device("cpu"), amp=False)  # a weight of 0 would drop them silently
    assert net.eval()(x).shape == (4, 3)  # one tensor: the main classifier's


def test_norm_layers_and_biases_get_their_own_groups_from_one_rule() -> None:
    net = models.build("resnet18", 10)
    groups = parameter_groups(net, 1e-4, bias_lr_mult=1.0, bias_decay=True, norm_decay=False)
    weights, norms, biases = groups
    bn_scales = {id(m.weight) for m in net.modules() if isinstance(m, nn.BatchNorm2d)}
    assert {id(p) for p in norms["params"]} == bn_scales and norms["weight_decay"] == 0.0
    assert weights["weight_decay"] == 1e-4 and not bn_scales & {id(p) for p in weights["params"]}
    assert all(p.dim() == 1 for p in biases["params"]) and biases["weight_decay"] == 1e-4
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    alexnet = parameter_groups(AlexNet(10), 5e-4, bias_lr_mult=2.0, bias_decay=False, norm_decay=False)
    assert [(g["weight_decay"], g["lr_mult"]) for g in alexnet] == [(5e-4, 1.0), (0.0, 2.0)]  # as before: two


def test_a_network_s_recipe_sets_the_defaults_and_flags_and_presets_override_it() -> None:
    resnet = train_config_for("data", train_args="--arch resnet50")  # a sweep's or an ensemble's --train-args
    assert (resnet.lr, resnet.batch_size, resnet.weight_decay, resnet.bias_lr_mult, resnet.epochs) == (
        0.1, 256, 1e-4, 1.0, 120)
    assert train_config_for("data", train_args="--arch resnet50 --lr 0.05 --no-bias-decay").lr == 0.05
    assert not train_config_for("data", train_args="--arch resnet50 --no-bias-decay").bias_decay
    demo = train_config_for("data", preset="digits", train_args="--arch resnet50")
    assert (demo.lr, demo.batch_size, demo.epochs, demo.weight_decay) == (
        PRESETS["digits"]["lr"], PRESETS["digits"]["batch_size"], PRESETS["digits"]["epochs"], 1e-4)
    assert train_config_for("data") == TrainConfig(data="data")  # alexnet: the paper's recipe, the defaults
    googlenet = train_config_for("data", train_args="--arch googlenet")
    schedule = LRSchedule(0.01, googlenet.lr_schedule, steps=googlenet.lr_steps, factor=googlenet.lr_factor)
    assert schedule.lr(7) == 0.01 and schedule.lr(8) == pytest.approx(0.0096)  # 4% every 8 epochs
    assert schedule.lr(16) == pytest.approx(0.01 * 0.96**2) and googlenet.dropout == 0.4


@pytest.mark.parametrize("flags, message", [
    ({"arch": "resnet"}, "--arch 'resnet' is not one of lenet5, alexnet, zfnet"),
    ({"arch": "alexnet", "input_size": 64}, "alexnet takes only its native 224x224 input"),
    ({"arch": "lenet5", "input_size": 224}, "lenet5 takes only its native 32x32 input"),
    ({"arch": "vgg16", "input_size": 16}, "vgg16 needs at least 32x32"),
    ({"lr_factor": 1.0}, "--lr-factor must be in (0, 1)"),
])
def test_bad_network_settings_are_one_line_errors(flags: dict, message: str) -> None:
    with pytest.raises(UserError) as e:
        TrainConfig(**flags)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_builders_take_only_their_own_options_and_old_model_args_are_an_alexnet() -> None:
    with pytest.raises(TypeError, match="resnet18 takes no option grouped"):
        models.build("resnet18", 10, grouped=True)
    with torch.device("meta"):
        old = models.from_model_args({"num_classes": 3, "grouped": True, "lrn": "paper", "bias_init": "caffe",
                                      "dropout": 0.5})
    assert type(old) is AlexNet


@pytest.mark.parametrize("name", NAMES)
def test_every_recipe_is_a_valid_training_config(name: str) -> None:
    """A recipe names only training settings, with values the config accepts."""
    TrainConfig(arch=name, **models.get(name).recipe)
