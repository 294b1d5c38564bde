"""Every bad number or name is refused by the config, in one line naming the flag."""

import pytest

from alexnet import cli
from alexnet.config import EnsembleConfig, SweepConfig, TrainConfig, train_config_for
from alexnet.errors import UserError


@pytest.mark.parametrize("flags, message", [
    ({"lr": float("inf")}, "--lr must be a finite number, got inf"),
    ({"lr": float("nan")}, "--lr must be a finite number, got nan"),
    ({"weight_decay": float("inf")}, "--weight-decay must be a finite number, got inf"),
    ({"dropout": float("nan")}, "--dropout must be a finite number, got nan"),
    ({"cpus_per_worker": float("inf")}, "--cpus-per-worker must be a finite number"),
    ({"workers": 0}, "--workers must be at least 1, got 0"),
    ({"threads_per_worker": -1}, "--threads-per-worker must be non-negative"),
    ({"augment_cpus": -0.5}, "--augment-cpus must be non-negative"),
    ({"max_failures": -2}, "--max-failures must be -1 (unlimited) or non-negative, got -2"),
    ({"name": "a/b"}, "--name 'a/b': a name must not contain /"),
    ({"name": ".."}, "--name '..': a name must not contain /"),
    ({"name": "it's \"x\""}, "use either ' or \" in a name, not both"),
])
def test_bad_training_settings_are_one_line_errors(flags: dict, message: str) -> None:
    with pytest.raises(UserError) as e:
        TrainConfig(**flags)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_settings_that_stay_valid() -> None:
    TrainConfig(max_failures=-1, threads_per_worker=0, augment_cpus=0.0, name="it's mine")
    SweepConfig(name='say "hi"')


def test_flags_parse_inf_and_are_refused_in_one_line() -> None:
    with pytest.raises(SystemExit) as e:
        cli.parse(TrainConfig, "", ["--weight-decay", "inf"])
    assert e.value.code == 2


@pytest.mark.parametrize("flags, message", [
    ({"lr_range": (1e-3, float("inf"))}, "--lr-range must be a finite number, got (0.001, inf)"),
    ({"lr_grid": (0.01, float("nan"))}, "--lr-grid must be a finite number"),
    ({"reduction_factor": float("inf")}, "--reduction-factor must be a finite number"),
    ({"name": "x/y"}, "--name 'x/y'"),
])
def test_bad_sweep_settings(flags: dict, message: str) -> None:
    with pytest.raises(UserError, match=None) as e:
        SweepConfig(**flags)
    assert message in str(e.value)


def test_bad_ensemble_tags() -> None:
    with pytest.raises(UserError, match="a tag key cannot contain `"):
        EnsembleConfig(tag="a`b=1", member_experiment="e")
    with pytest.raises(UserError, match="not both"):
        EnsembleConfig(tag="team=it's \"x\"", member_experiment="e")
    EnsembleConfig(tag="team=it's", member_experiment="e")


def test_an_unclosed_quote_in_train_args_is_one_line() -> None:
    with pytest.raises(UserError) as e:
        train_config_for("data/digits", train_args="--name 'unclosed")
    assert str(e.value).startswith("--train-args \"--name 'unclosed\": No closing quotation; check its quotes")
