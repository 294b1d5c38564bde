"""jobs/compare.py: the networks' list with their published parameter counts, the
variants' training configs, and a real comparison of two variants through `fit` as
children of one MLflow parent run, whose rerun under the same name trains nothing again."""

import json
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from job_loader import load_job
from mlflow.tracking import MlflowClient

from alexnet import models, tracking
from alexnet.compare import KIND_TAG, VARIANT_TAG, CompareConfig, Variant, arch_variants, compare, variant_config

PUBLISHED = {"alexnet": 60_965_224, "vgg16": 138_357_544, "vgg19": 143_667_240, "resnet50": 25_557_032,
             "resnet18": 11_689_512, "googlenet": 6_624_904}  # GoogLeNet without its auxiliary heads


def test_list_prints_every_network_and_writes_the_published_counts(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    out_json = tmp_path / "archs.json"
    assert load_job("compare").main(["--list", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out_json.read_text())
    assert [r["arch"] for r in rows] == models.names()
    by_arch = {r["arch"]: r for r in rows}
    for arch, count in PUBLISHED.items():
        assert by_arch[arch]["params"] == count, arch
        assert re.search(rf"^{arch}\s+{count:,}\s", out, re.M), arch  # the printed table says the same
    assert {"arch", "params", "forward_gflop", "input_size"} <= set(rows[0])
    assert by_arch["lenet5"]["input_size"] == 32 and by_arch["alexnet"]["input_size"] == 224
    assert by_arch["alexnet"]["forward_gflop"] == pytest.approx(2 * 0.72, rel=0.01)  # the paper's net, grouped
    assert by_arch["resnet50"]["forward_gflop"] == pytest.approx(2 * 4.1, rel=0.02)  # torchvision's 4.09 GMAC
    assert all(r["train_gflop"] > 2 * r["forward_gflop"] for r in rows)


def test_an_unknown_network_is_refused_naming_the_valid_ones(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        load_job("compare").main(["--archs", "alexnet,lenet6"])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert "--archs: unknown network(s) lenet6" in err and ", ".join(models.names()) in err
    assert len(err.strip().splitlines()) == 1 and out == ""  # refused as the flags are read, before anything runs


def test_variants_take_the_comparison_s_flags_then_their_own() -> None:
    cfg = CompareConfig(data="/data/shards", archs=("lenet5", "resnet18"), train_preset="digits",
                        train_args="--epochs 2 --lr 0.05", variant_args="lenet5: --epochs 8 --batch-size 16")
    variants = arch_variants(cfg)
    assert variants == [Variant("lenet5", "--arch lenet5 --epochs 8 --batch-size 16"),
                        Variant("resnet18", "--arch resnet18")]
    lenet, resnet = (variant_config(cfg, v, "cmp") for v in variants)
    assert (lenet.arch, lenet.epochs, lenet.batch_size, lenet.lr, lenet.name) == ("lenet5", 8, 16, 0.05, "cmp-lenet5")
    assert (resnet.epochs, resnet.batch_size, resnet.weight_decay) == (2, 64, 1e-4)  # preset, flags, its recipe
    # --epochs wins over --train-args, and a variant's own flags over --epochs
    assert [variant_config(replace(cfg, epochs=3), v, "cmp").epochs for v in variants] == [8, 3]
    assert lenet.experiment == resnet.experiment == cfg.experiment


def test_two_variants_train_as_children_of_one_run_and_a_rerun_trains_nothing(
        ray_session, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """LeNet-5 twice (the cheapest network), at two learning rates, one epoch each,
    through the real fit; then the same comparison again."""
    name = f"cmp-{tmp_path.name}"
    cfg = CompareConfig(data=str(tiny_data), archs=("lenet5",), epochs=1,
                        train_args="--batch-size 12 --log-every 1", storage=str(tmp_path / "runs"),
                        experiment="test-compare", name=name)
    variants = [Variant("lenet5", "--arch lenet5"), Variant("lenet5-lr0.05", "--arch lenet5 --lr 0.05")]
    outcome = compare(cfg, variants)
    out = capsys.readouterr().out
    assert outcome.failed == [] and [r.variant for r in outcome.rows] == ["lenet5", "lenet5-lr0.05"]
    client = MlflowClient(tracking.tracking_uri())
    exp_id = client.get_experiment_by_name("test-compare").experiment_id
    parent = client.get_run(tracking.find_run(client, exp_id, name))
    assert parent.info.run_id == outcome.parent_run_id
    assert parent.info.status == "FINISHED" and parent.data.tags[KIND_TAG] == "comparison"
    assert parent.data.params["variant.lenet5-lr0.05"] == "--arch lenet5 --lr 0.05"

    children = {}
    for v in variants:
        run = client.get_run(tracking.find_run(client, exp_id, f"{name}-{v.name}"))
        children[v.name] = run
        assert run.info.status == "FINISHED"
        assert run.data.tags[tracking.PARENT_TAG] == parent.info.run_id and run.data.tags[VARIANT_TAG] == v.name
        assert run.data.params["arch"] == "lenet5" and run.data.params["epochs"] == "1"
        for key in ("val_top1_err", "val_top5_err", "images_per_sec", "input_stall_frac"):
            assert len(client.get_metric_history(run.info.run_id, key)) == 1, (v.name, key)
        assert run.data.metrics["num_params"] == 60_000  # its RBF centres are buffers: any number of classes
        assert run.data.metrics["forward_gflop"] == pytest.approx(0.00065136)  # as --list counts it, at 32x32
    assert children["lenet5"].data.params["lr"] == "0.01" and children["lenet5-lr0.05"].data.params["lr"] == "0.05"

    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"comparison.md", "comparison.csv", "comparison_curves.png"} <= artifacts
    table = pd.read_csv(client.download_artifacts(parent.info.run_id, "comparison.csv", str(tmp_path)))
    assert list(table["variant"]) == ["lenet5", "lenet5-lr0.05"] and list(table["epochs"]) == [1, 1]
    for _, row in table.iterrows():
        child = children[row["variant"]].data.metrics
        assert row["val_top1_err"] == pytest.approx(child["val_top1_err"])
        assert row["val_top5_err"] == pytest.approx(child["val_top5_err"])
        assert row["img_per_sec"] == pytest.approx(child["images_per_sec"])
        assert row["input_stall_frac"] == pytest.approx(child["input_stall_frac"])
        assert row["train_s"] == pytest.approx(36 / child["images_per_sec"])  # 3 batches of 12
        assert row["params"] == 60_000
    md = Path(client.download_artifacts(parent.info.run_id, "comparison.md", str(tmp_path))).read_text()
    assert "| lenet5-lr0.05 | `--arch lenet5 --lr 0.05` | FINISHED | 1 | 60,000 |" in md
    assert md.split("\n\n", 1)[1].strip() in out  # the job prints the same table
    png = Path(client.download_artifacts(parent.info.run_id, "comparison_curves.png", str(tmp_path)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = compare(cfg, variants)  # the same comparison again: both children are finished
    out = capsys.readouterr().out
    assert out.count("not retrained") == 2 and "[train]" not in out
    assert again.parent_run_id == parent.info.run_id
    for v, run in children.items():
        assert client.get_run(run.info.run_id).info.end_time == run.info.end_time, v  # fit never touched it
        assert len(client.get_metric_history(run.info.run_id, "val_top1_err")) == 1
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
