"""Every bad number or name is refused by the config, in one line naming the flag."""

import pytest

from alexnet import cli
from alexnet.config import (
    ENSEMBLE_PRESETS,
    PRESETS,
    SWEEP_PRESETS,
    EnsembleConfig,
    SweepConfig,
    TrainConfig,
    train_config_for,
)
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


def test_a_negative_number_of_members_at_once_is_refused() -> None:
    with pytest.raises(UserError, match="--max-concurrent must be non-negative, got -1"):
        EnsembleConfig(train=True, max_concurrent=-1)


def test_an_unclosed_quote_in_train_args_is_one_line() -> None:
    with pytest.raises(UserError) as e:
        train_config_for("data/digits", train_args="--name 'unclosed")
    assert str(e.value).startswith("--train-args \"--name 'unclosed\": No closing quotation; check its quotes")


def makefile_commands() -> dict[str, list[str]]:
    """Each job command of the Makefile's targets, as argv after `$(PY)`."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    return {m.group(1): shlex.split(m.group(2).replace("$(ARGS)", ""))
            for m in re.finditer(r"^\t\$\(PY\) (jobs/(?:train|tune|ensemble)\.py)(.*)$", text, re.M)}


def test_the_presets_behind_make_train_tune_and_ensemble_parse() -> None:
    """`make train`, `make tune` and `make ensemble` run their job with a preset: each
    parses to a valid config, and a sweep's or ensemble's training preset resolves too."""
    commands = makefile_commands()
    assert set(commands) == {"jobs/train.py", "jobs/tune.py", "jobs/ensemble.py"}
    train = cli.parse(TrainConfig, "train", commands["jobs/train.py"], presets=PRESETS)
    assert (train.epochs, train.batch_size, train.experiment) == (8, 64, "alexnet-digits")
    sweep = cli.parse(SweepConfig, "tune", commands["jobs/tune.py"], presets=SWEEP_PRESETS, config_file=True)
    assert sweep.lr_grid and sweep.weight_decay_grid
    ensemble = cli.parse(EnsembleConfig, "ensemble", commands["jobs/ensemble.py"], presets=ENSEMBLE_PRESETS)
    assert ensemble.train and ensemble.members == 7
    for cfg in (sweep, ensemble):
        member = train_config_for(cfg.data, cfg.train_preset, cfg.train_args)
        assert member.batch_size == train.batch_size and member.bias_init == "caffe"


def test_the_presets_behind_make_compare_and_make_ablations_parse() -> None:
    """`make compare` and `make ablations` run jobs/compare.py with a preset each: both parse,
    and every variant's training config resolves (the ablations: the paper's AlexNet at the
    demo preset and one switch each)."""
    import re
    from pathlib import Path

    from alexnet.compare import COMPARE_PRESETS, CompareConfig, variant_config, variants_of

    text = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    commands = re.findall(r"^\t\$\(PY\) jobs/compare\.py (--preset \w+)", text, re.M)
    assert commands == ["--preset digits", "--preset ablations"]
    compare = cli.parse(CompareConfig, "compare", commands[0].split(), presets=COMPARE_PRESETS)
    assert [v.name for v in variants_of(compare)] == ["lenet5", "alexnet", "zfnet", "resnet18", "googlenet"]
    ablations = cli.parse(CompareConfig, "compare", commands[1].split(), presets=COMPARE_PRESETS)
    variants = variants_of(ablations)
    assert len(variants) == 11 and variants[0].name == "paper" and ablations.train_err_threshold == 50
    configs = [variant_config(ablations, v, "abl") for v in variants]
    assert {(c.arch, c.epochs, c.batch_size, c.bias_init) for c in configs} == {("alexnet", 3, 64, "caffe")}
