"""Bad configuration fails in one line, with a non-zero exit, before any work starts; --help
reads as the jobs' docstrings are written."""

import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from job_loader import load_job

ROOT = Path(__file__).resolve().parents[1]


def run_job(*args: str) -> subprocess.CompletedProcess:
    """A job as users start it, in a process of its own (kept for the two checks that
    need one: the exit code as a shell sees it, and that Ray was never started)."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def run_in_process(capsys: pytest.CaptureFixture, name: str, *argv: str) -> tuple[int, str]:
    """(exit code, stderr) of `jobs/<name>.py argv` run in this process, through the same
    entry point (`cli.run(main)`): a refused flag exits 2 with argparse's message, a
    UserError exits 1 with its one line."""
    from alexnet import cli

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.run(lambda: load_job(name).main(list(argv)))
    err = capsys.readouterr().err
    if isinstance(e.value.code, str):
        return 1, err + e.value.code + "\n"
    return int(e.value.code or 0), err


JOBS = {"train": "TrainConfig", "tune": "SweepConfig", "ensemble": "EnsembleConfig", "predict": "PredictConfig",
        "prepare_data": "PrepareConfig", "bench": "BenchConfig", "gpu_check": "GpuCheckConfig",
        "compare": "CompareConfig", "figures": "FiguresConfig"}


@pytest.mark.parametrize("name", sorted(JOBS))
def test_help_lists_every_flag(name: str, capsys: pytest.CaptureFixture) -> None:
    module = load_job(name)
    with pytest.raises(SystemExit) as e:
        module.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    fields = dataclasses.fields(getattr(module, JOBS[name]))
    missing = [f.name for f in fields if f"--{f.name.replace('_', '-')}" not in text]
    assert fields and not missing


@pytest.mark.parametrize("flags, message", [
    (["--lr", "-0.1"], "--lr must be positive"),
    (["--lr", "0"], "--lr must be positive"),
    (["--batch-size", "10", "--workers", "3"], "--batch-size 10 must be divisible by --workers 3"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--workers", "0"], "--workers must be at least 1, got 0"),
    (["--lr", "inf"], "--lr must be a finite number, got inf"),
])
def test_invalid_training_flags(flags: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    code, err = run_in_process(capsys, "train", *flags)
    assert code == 2 and message in err and "Traceback" not in err


def test_unprepared_data_is_one_line(tmp_path: Path) -> None:
    out = run_job("jobs/train.py", "--data", str(tmp_path))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith(f"error: --data {tmp_path}: no manifest.json")
    assert "Traceback" not in out.stderr


def test_a_yaml_config_sets_defaults_and_flags_override_it(tmp_path: Path) -> None:
    from alexnet import cli
    from alexnet.config import SweepConfig

    path = tmp_path / "sweep.yaml"
    path.write_text("lr-grid: [0.01, 0.02]\nweight_decay_range: [1e-5, 1e-3]\nnum_samples: 3\nseeds: ''\n")
    cfg = cli.parse(SweepConfig, "", ["--config", str(path), "--num-samples", "5"], config_file=True)
    assert cfg.lr_grid == (0.01, 0.02) and cfg.weight_decay_range == (1e-5, 1e-3) and cfg.num_samples == 5


def test_an_unknown_yaml_setting_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("learning_rate: 0.1\n")
    code, err = run_in_process(capsys, "tune", "--config", str(path))
    assert code == 2 and f"--config {path}: unknown setting 'learning_rate'" in err


def test_list_flags_are_typed() -> None:
    from alexnet import cli
    from alexnet.config import TrainConfig

    cfg = cli.parse(TrainConfig, "", ["--lr-steps", "10,20", "--lr-schedule", "step"])
    assert cfg.lr_steps == (10, 20)


def test_an_unclosed_quote_in_train_args_is_one_line(capsys: pytest.CaptureFixture) -> None:
    code, err = run_in_process(capsys, "tune", "--train-args", "--name 'x")
    assert code == 1
    assert err.strip().splitlines()[-1] == "error: --train-args \"--name 'x\": No closing quotation; check its quotes"


def test_abbreviated_flags_are_refused(capsys: pytest.CaptureFixture) -> None:
    code, err = run_in_process(capsys, "tune", "--workers", "2")  # not a prefix of --workers-per-trial
    assert code == 2 and "unrecognized arguments: --workers" in err


def test_ensemble_members_are_checked_before_ray_starts(tmp_path: Path) -> None:
    from handmade import handmade_data

    data = handmade_data(tmp_path / "data")
    out = run_job("jobs/ensemble.py", "--data", str(data), "--runs", "0123456789abcdef", "--members", "1")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("error: member 0123456789abcdef: no such MLflow run")
    assert "Started a local Ray" not in out.stderr and "Traceback" not in out.stderr


def job_help(cls: type, job: str = "") -> str:
    """A job's --help, in-process: its config class with its module docstring."""
    from alexnet import cli

    doc = ast.get_docstring(ast.parse((ROOT / job).read_text()), clean=False) if job else ""
    return cli.build_parser(cls, doc or "").format_help()


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("job, cls", [("jobs/train.py", "TrainConfig"), ("jobs/tune.py", "SweepConfig"),
                                      ("jobs/ensemble.py", "EnsembleConfig"), ("jobs/predict.py", "PredictConfig")])
def test_help_keeps_the_examples_one_per_line(job: str, cls: str) -> None:
    from alexnet import config

    lines = job_help(getattr(config, cls), job).splitlines()
    doc = ast.get_docstring(ast.parse((ROOT / job).read_text()))
    examples = [line for line in doc.splitlines() if line.startswith("    python jobs/")]
    assert examples and all(example in lines for example in examples)


def test_help_names_a_default_once() -> None:
    from alexnet.config import EnsembleConfig, SweepConfig, TrainConfig

    assert "resumes it (default: a new name) --experiment" in flat(job_help(TrainConfig))
    assert "(default: the paper's recipe) --train-args" in flat(job_help(SweepConfig))
    for cls in (TrainConfig, SweepConfig, EnsembleConfig):  # empty defaults get no suffix
        text = flat(job_help(cls))
        assert "(default: )" not in text and "(default: None)" not in text


def test_help_prints_list_defaults_as_the_flag_takes_them() -> None:
    from alexnet import cli
    from alexnet.config import SweepConfig, TrainConfig

    text = flat(job_help(TrainConfig))
    assert "(default: 30,60,80)" in text and "(30, 60, 80)" not in text
    assert "(default: 0.001,0.1)" in flat(job_help(SweepConfig))
    assert cli.parse(TrainConfig, "", ["--lr-steps", "30,60,80"]).lr_steps == TrainConfig().lr_steps


def test_help_of_workers_states_its_real_default() -> None:
    from alexnet.config import TrainConfig

    options = flat(job_help(TrainConfig).split("options:")[1])
    entry = options[options.index("--workers WORKERS"):options.index("--batch-size BATCH_SIZE")]
    assert "(default: 1)" in entry and "when GPUs exist" not in entry


@pytest.mark.parametrize("name, extra", [("train", ["--batch-size", "2"]),
                                         ("tune", ["--train-args", "--batch-size 2"])])
def test_a_second_job_of_the_same_name_is_refused_before_ray_starts(
        name: str, extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The job takes its run's lock before it starts or joins Ray: a clash costs no start-up."""
    import ray
    from handmade import handmade_data

    from alexnet.trainer import run_lock

    data, storage = handmade_data(tmp_path / "data"), tmp_path / "runs"
    was_connected = ray.is_initialized()
    with run_lock(str(storage), "busy", "the first job"):
        code, err = run_in_process(capsys, name, "--data", str(data), "--storage", str(storage), "--name", "busy",
                                   *extra)
    assert code == 1 and f"in use by pid {os.getpid()}" in err.strip().splitlines()[-1]
    assert ray.is_initialized() == was_connected  # refused before init_ray
