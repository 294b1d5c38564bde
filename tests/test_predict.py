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
from alexnet.errors import UserError
from alexnet.members import Member
from alexnet.model import AlexNet
from alexnet.predict import classify_folder, prepare_output

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
    out = tmp_path / "not-yet" / "single.csv"  # a missing folder is created
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


def untrained_member() -> Member:
    """A real network with fresh weights: what is read and reported does not depend on
    training, and no run or Ray is needed."""
    args = {"num_classes": 3, "grouped": True, "lrn": "paper", "bias_init": "caffe", "dropout": 0.5}
    return Member(run_id="fresh", name="fresh", seed=0, classes=["n0", "n1", "n2"], model_args=args,
                  weights=AlexNet(**args).state_dict(), rgb_mean=[127.0, 127.0, 127.0])


def test_files_that_are_not_images_get_a_row_with_the_reason(tiny_src: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(tiny_src / "val" / sorted(p.name for p in (tiny_src / "val").iterdir())[0], folder)
    (folder / "README.txt").write_text("about these photos")
    (folder / "sub").mkdir()
    (folder / "sub" / "LICENSE").write_text("no extension")
    preds = classify_folder([untrained_member()], "prob", folder, batch_size=4).fillna("")
    assert len(preds) == 5 + 2
    rows = preds.set_index("image")
    assert rows.loc["README.txt", "error"].startswith("not an image: extension '.txt' is none of .bmp, ")
    assert rows.loc["sub/LICENSE", "error"].startswith("not an image: no extension")
    assert rows.loc["README.txt", "class_1"] == ""
    assert (preds["error"] == "").sum() == 5 and set(preds.loc[preds["error"] == "", "class_1"]) <= {"n0", "n1", "n2"}


def test_out_in_a_missing_folder_is_created_before_scoring(tmp_path: Path) -> None:
    out = prepare_output(str(tmp_path / "new" / "deeper" / "preds.csv"))
    assert out.parent.is_dir() and list(out.parent.iterdir()) == []  # the folder, no stray file

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UserError, match=f"--out {blocker}/preds.csv: cannot write there"):
        prepare_output(str(blocker / "preds.csv"))
    with pytest.raises(UserError, match="is a directory; name a CSV file"):
        prepare_output(str(tmp_path))


def test_a_bad_out_is_refused_before_the_run_is_looked_up(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UserError, match="--out .*cannot write there"):
        predict_job.main(["--run", "no-such-run", "--images", str(tmp_path), "--out", str(blocker / "p.csv")])
