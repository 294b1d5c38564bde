"""jobs/figures.py: the paper's figure 4 for a real ensemble run: its top five classes for
validation images, and the training images nearest to others by the last hidden layer,
checked against a brute-force search; the training features kept and reused."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from job_loader import load_job
from mlflow.tracking import MlflowClient

from alexnet import tracking
from alexnet.data import manifest as mf
from alexnet.figures import PenultimateFeatures, centre_crops, rows_by_index
from alexnet.predict import resolve_members


def test_figure_4_for_an_ensemble_with_its_features_kept_for_reuse(trained_ensemble, tiny_data: Path,
                                                                   tmp_path: Path, capsys) -> None:
    out = tmp_path / "figures"
    argv = ["--run", trained_ensemble.run_id, "--data", str(tiny_data), "--images", "4", "--queries", "2",
            "--neighbours", "3", "--out", str(out)]
    assert load_job("figures").main(argv) == 0
    assert "computed and kept the training set's features" in capsys.readouterr().out
    for png in ("top5.png", "retrieval.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    logged = {a.path for a in MlflowClient(tracking.tracking_uri()).list_artifacts(trained_ensemble.run_id,
                                                                                     "figures")}
    assert logged == {"figures/top5.png", "figures/retrieval.png", "figures/figures.json"}

    found = json.loads((out / "figures.json").read_text())
    assert len(found["top5"]) == 4 and len(found["nearest"]) == 2
    for shown in found["top5"]:  # 3 classes: the top five are all three, most probable first
        assert sorted(shown["classes"]) == [0, 1, 2] and shown["probs"] == sorted(shown["probs"], reverse=True)
        assert sum(shown["probs"]) == pytest.approx(1.0, abs=1e-4)

    # The neighbours are the training images nearest by member 1's last hidden layer (LeNet-5: C5's 120 maps)
    members, _ = resolve_members(MlflowClient(tracking.tracking_uri()), trained_ensemble.run_id)
    manifest, _ = mf.load(tiny_data)
    train = rows_by_index(manifest.shard_paths(str(tiny_data), "train"), list(range(36)))
    val_paths = manifest.shard_paths(str(tiny_data), "val")
    net = PenultimateFeatures(members[0])
    feats = net.features(centre_crops([train[i] for i in range(36)])[0])
    assert feats.shape == (36, 120)
    for query in found["nearest"]:
        q = net.features(centre_crops([rows_by_index(val_paths, [query["index"]])[query["index"]]])[0])[0]
        by_hand = np.argsort(np.linalg.norm(feats - q, axis=1), kind="stable")[:3]
        assert query["neighbours"] == by_hand.tolist()  # float16 features keep the order here
        assert query["distances"] == sorted(query["distances"])
        assert query["neighbour_labels"] == [train[i]["label"] for i in by_hand]

    kept = sorted((out / "train-features").glob("part-*.parquet"))
    assert sum(pq.read_metadata(p).num_rows for p in kept) == 36
    assert load_job("figures").main([*argv, "--seed", "1"]) == 0  # other images, the same network and data
    assert "reused the training set's features" in capsys.readouterr().out


def test_class_names_come_from_the_synset_words(tmp_path: Path) -> None:
    words = tmp_path / "LOC_synset_mapping.txt"
    words.write_text("n01440764 tench, Tinca tinca\nn01443537\tgoldfish, Carassius auratus\n")
    assert mf.read_synset_words(words) == {"n01440764": "tench, Tinca tinca",
                                           "n01443537": "goldfish, Carassius auratus"}
    (tmp_path / mf.CLASS_NAMES).write_text(json.dumps({"n01440764": "tench, Tinca tinca"}))
    assert mf.class_names(tmp_path, ["n01440764", "n99999999"]) == ["tench, Tinca tinca", "n99999999"]
    with pytest.raises(Exception, match="--synset-words .*cannot read it"):
        mf.read_synset_words(tmp_path / "missing.txt")
