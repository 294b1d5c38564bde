"""The ensemble job end to end: members trained by a real seed sweep, scored by Ray Data
actors, recorded in MLflow, and checked against what was saved."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from job_loader import load_job
from mlflow.tracking import MlflowClient

from alexnet import tracking
from alexnet.assemble import EnsembleOutcome, assemble
from alexnet.config import EnsembleConfig
from alexnet.ensemble import tally
from alexnet.errors import UserError


def test_logged_errors_recompute_from_the_saved_predictions(trained_ensemble: EnsembleOutcome, tmp_path: Path) -> None:
    client = MlflowClient(tracking.tracking_uri())
    run = client.get_run(trained_ensemble.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["members"] == "2"
    assert run.data.params["member_run_ids"].split(",") == trained_ensemble.member_run_ids
    seeds = [client.get_run(r).data.params["seed"] for r in trained_ensemble.member_run_ids]
    assert seeds == ["0", "1"]

    preds = pd.read_parquet(client.download_artifacts(trained_ensemble.run_id, "predictions.parquet", str(tmp_path)))
    assert list(preds.columns) == ["image_id", "label", "top5", "top5_prob"] and len(preds) == 15
    assert preds["image_id"].is_unique
    top1 = 100 * (preds["top5"].map(lambda t: t[0]) != preds["label"]).mean()
    top5 = 100 * (~pd.Series([lab in list(t) for lab, t in zip(preds["label"], preds["top5"], strict=True)])).mean()
    assert run.data.metrics["ensemble_top1_err"] == pytest.approx(top1)
    assert run.data.metrics["ensemble_top5_err"] == pytest.approx(top5)
    assert all(list(p) == sorted(p, reverse=True) for p in preds["top5_prob"])  # most probable first

    for i, member in enumerate(trained_ensemble.member_run_ids, start=1):  # a member scored here = its own last epoch
        logged = client.get_run(member).data.metrics["val_top1_err"]
        assert run.data.metrics[f"member_{i}_top1_err"] == pytest.approx(logged)
    steps = client.get_metric_history(trained_ensemble.run_id, "ensemble_top1_err_by_members")
    assert [m.step for m in steps] == [1, 2]
    assert steps[0].value == pytest.approx(run.data.metrics["member_1_top1_err"])
    assert steps[1].value == pytest.approx(top1)
    artifacts = {a.path for a in client.list_artifacts(trained_ensemble.run_id)}
    assert {"predictions.parquet", "report.md", "ensemble_by_members.png"} <= artifacts
    assert "paper: 7 CNNs*" in trained_ensemble.report and "ensemble of 2" in trained_ensemble.report


@pytest.mark.parametrize("merge", ["prob", "logits"])
def test_identical_members_merge_to_the_member(merge: str) -> None:
    """The merging arithmetic, on synthetic scores: N copies of one member are that member."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 1, 10, generator=g)
    scores = logits if merge == "logits" else logits.softmax(-1)
    label, valid = torch.randint(0, 10, (12,), generator=g), torch.arange(12) != 3
    batch = lambda n: {"scores": scores.repeat(1, n, 1).numpy(), "label": label.numpy(),  # noqa: E731
                       "valid": valid.numpy(), "index": np.arange(12)}
    single, triple = tally([batch(1)], 1, merge), tally([batch(3)], 3, merge)
    assert triple.errors()["members"] == single.errors()["members"] * 3
    assert triple.errors()["prefixes"] == single.errors()["prefixes"] * 3
    a, b = single.predictions[0], triple.predictions[0]
    assert a["top5"].map(list).tolist() == b["top5"].map(list).tolist()
    assert np.allclose(np.stack(a["top5_prob"]), np.stack(b["top5_prob"]), atol=1e-6)


def test_the_ensemble_job_scores_the_members_it_is_given(trained_ensemble: EnsembleOutcome, tiny_data: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    """`jobs/ensemble.py --runs` as users run it (in this process): a member given three
    times, merged by logits, is that member."""
    member = trained_ensemble.member_run_ids[0]
    assert load_job("ensemble").main(["--data", str(tiny_data), "--runs", ",".join([member] * 3), "--merge", "logits",
                     "--experiment", "test-ensemble"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    top1 = trained_ensemble.member_errors[0][0]
    assert line.startswith("[ensemble] done. MLflow run") and f"ensemble of 3 top-1 error {top1:.2f}%" in line


def test_members_with_another_class_list_or_no_checkpoint_are_refused(
        trained_ensemble: EnsembleOutcome, tiny_data: Path, tmp_path: Path) -> None:
    client = MlflowClient(tracking.tracking_uri())
    good = trained_ensemble.member_run_ids[0]
    exp_id = client.get_run(good).info.experiment_id
    checkpoint = client.download_artifacts(good, "checkpoint/checkpoint.pt", str(tmp_path))
    classes = json.loads((tiny_data / "classes.json").read_text())

    other = client.create_run(exp_id, run_name="trained-on-other-data").info.run_id
    (tmp_path / "classes.json").write_text(json.dumps(list(reversed(classes))))
    client.log_artifact(other, str(tmp_path / "classes.json"))
    client.log_artifact(other, checkpoint, "checkpoint")
    with pytest.raises(UserError, match=f"member {other} \\('trained-on-other-data'\\): its class list"):
        assemble(EnsembleConfig(data=str(tiny_data), runs=(good, other), experiment="test-ensemble"))

    unfinished = client.create_run(exp_id, run_name="never-finished").info.run_id
    client.log_artifact(unfinished, str(tiny_data / "classes.json"))
    with pytest.raises(UserError, match=f"member {unfinished} \\('never-finished'\\): no checkpoint/checkpoint.pt"):
        assemble(EnsembleConfig(data=str(tiny_data), runs=(good, unfinished), experiment="test-ensemble"))


def test_member_sources_are_exclusive() -> None:
    with pytest.raises(UserError, match="exactly one of --train, --runs, --parent, --tag"):
        EnsembleConfig(train=True, runs=("abc",))
    with pytest.raises(UserError, match="exactly one of"):
        EnsembleConfig()
