"""jobs/predict.py on real trained runs: a folder of files (one unreadable), an ensemble
run, and the validation shards through Ray Data."""

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from alexnet import tracking

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
import predict as predict_job  # noqa: E402


@pytest.fixture
def photos(tiny_src: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    shutil.copytree(tiny_src / "val", folder / "val")
    (folder / "notes.jpg").write_text("not an image")
    return folder


def test_a_folder_is_classified_and_unreadable_files_are_kept(trained_ensemble, photos: Path, tiny_data: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "single.csv"
    assert predict_job.main(["--run", trained_ensemble.member_run_ids[0], "--images", str(photos),
                             "--out", str(out)]) == 0
    preds = pd.read_csv(out, keep_default_na=False)
    classes = json.loads((tiny_data / "classes.json").read_text())
    assert len(preds) == 16  # 15 scans and the text file
    broken = preds[preds["image"] == "notes.jpg"].iloc[0]
    assert broken["error"].startswith("UnidentifiedImageError") and broken["class_1"] == ""
    scored = preds[preds["error"] == ""]
    assert set(scored["class_1"]) <= set(classes)
    assert (scored["prob_1"] >= scored["prob_2"]).all() and (scored["prob_2"] >= scored["prob_3"]).all()

    ensemble_out = tmp_path / "ensemble.csv"  # an ensemble run brings its two members
    assert predict_job.main(["--run", trained_ensemble.run_id, "--images", str(photos), "--eval-crop", "ten",
                             "--out", str(ensemble_out)]) == 0
    assert len(pd.read_csv(ensemble_out)) == 16


def test_the_validation_shards_score_as_in_training(ray_session, trained_ensemble, tiny_data: Path,
                                                    tmp_path: Path) -> None:
    member = trained_ensemble.member_run_ids[0]
    out = tmp_path / "val.csv"
    assert predict_job.main(["--run", member, "--data", str(tiny_data), "--out", str(out)]) == 0
    preds = pd.read_csv(out)
    assert len(preds) == 15 and preds["image"].is_unique
    top1 = 100 * (preds["class_1"] != preds["label"]).mean()
    logged = MlflowClient(tracking.tracking_uri()).get_run(member).data.metrics["val_top1_err"]
    assert top1 == pytest.approx(logged)
