"""jobs/compare.py: the networks' list with their published parameter counts, the
variants' training configs (the networks', the paper's ablations'), the ablation report,
and a real comparison through `fit` as children of one MLflow parent run (one variant
re-scoring another's network), whose rerun under the same name trains nothing again."""

import json
import re
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import pytest
from job_loader import load_job
from mlflow.tracking import MlflowClient

from alexnet import ablations, models, tracking
from alexnet.compare import (
    KIND_TAG,
    VARIANT_TAG,
    CompareConfig,
    Row,
    Variant,
    ablation_table,
    ablation_variants,
    arch_variants,
    compare,
    variant_config,
)
from alexnet.errors import UserError

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


def test_ablation_variants_are_the_papers_network_and_one_switch_each() -> None:
    cfg = CompareConfig(data="/data/shards", ablations=("all",), train_preset="digits", epochs=3)
    variants = ablation_variants(cfg)
    assert [v.name for v in variants] == [ablations.BASELINE, *(a.name for a in ablations.ABLATIONS)]
    configs = {v.name: variant_config(cfg, v, "abl") for v in variants}
    paper = configs["paper"]
    assert paper.arch == "alexnet" and paper.epochs == 3 and paper.batch_size == 64  # the preset, then --epochs
    switched = {"tanh": ("activation", "tanh"), "no-lrn": ("lrn", "none"), "plain-pooling": ("pooling", "plain"),
                "no-pca": ("pca_std", 0.0), "no-crop-flip": ("crop_flip", False), "no-dropout": ("dropout", 0.0),
                "no-conv3": ("remove_conv", 3), "ungrouped": ("grouped", False), "ten-crops": ("eval_crop", "ten")}
    for name, (setting, value) in switched.items():
        differs = {k for k, v in asdict(configs[name]).items() if v != asdict(paper)[k]} - {"name"}
        assert differs == {setting} and getattr(configs[name], setting) == value, name
    half = configs["half-kernels"]
    assert (half.kernels, half.grouped) == ("half", False)
    assert [v.rescores for v in variants if v.rescores] == ["paper"]  # ten crops re-score the paper's network
    chosen = ablation_variants(replace(cfg, ablations=("ten-crops", "no-lrn")))
    assert [v.name for v in chosen] == ["paper", "no-lrn", "ten-crops"]  # the paper's order
    with pytest.raises(UserError, match="--ablations: unknown ablation\\(s\\) no-relu; they are all, tanh"):
        CompareConfig(ablations=("no-relu",))


def test_the_ablation_report_reads_training_speed_from_the_training_error() -> None:
    nan = float("nan")

    def row(name: str, train: list[float], top1: list[float]) -> Row:
        return Row(name, "", "FINISHED", len(top1), 0, nan, nan, 100.0, 0.0, 30.0 * len(top1), top1[-1], 10.0,
                   [30.0 * (k + 1) for k in range(len(top1))], top1, [10.0] * len(top1), "", train)

    table = ablation_table([row("paper", [80, 40, 20], [60, 30, 20]), row("tanh", [90, 70, 55], [70, 50, 42]),
                            row("no-lrn", [85, 45, 30], [61, 33, 21.5])], threshold=50)
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert "| epoch 2, 1.0 min |" in lines["paper"] and "| not in 3 epoch(s) |" in lines["tanh"]
    assert "| +22.00 |" in lines["tanh"] and "| +1.50 | +0.00 | +1.4 / +1.2 |" in lines["no-lrn"]
    assert "six times faster" in lines["tanh"] and "| 55.0 |" in lines["tanh"]  # its last training error


def test_variants_train_as_children_of_one_run_one_rescores_another_and_a_rerun_does_nothing(
        ray_session, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Two variants under ablation names, LeNet-5 standing in for AlexNet (the cheapest
    network; the machinery is the same): `paper`, one epoch through the real fit with its
    own flags over the comparison's (another lr, no crops, flips or colour jitter), and
    `ten-crops`, which scores `paper`'s network with ten crops instead of training one;
    then the same comparison again. One trained variant, not two: a Ray Train run costs
    ~20 s of start-up on 2 cores, and how each variant's flags are composed is checked
    for every variant in the unit tests above."""
    name = f"cmp-{tmp_path.name}"
    cfg = CompareConfig(data=str(tiny_data), archs=("lenet5",), epochs=1, ablations=("ten-crops",),
                        train_err_threshold=90.0, train_args="--batch-size 12 --log-every 1",
                        storage=str(tmp_path / "runs"), experiment="test-compare", name=name)
    variants = [Variant("paper", "--arch lenet5 --lr 0.05 --no-crop-flip --pca-std 0"),
                Variant("ten-crops", "--arch lenet5 --eval-crop ten", rescores="paper")]
    outcome = compare(cfg, variants)
    out = capsys.readouterr().out
    assert outcome.failed == [] and [r.variant for r in outcome.rows] == ["paper", "ten-crops"]
    client = MlflowClient(tracking.tracking_uri())
    exp_id = client.get_experiment_by_name("test-compare").experiment_id
    parent = client.get_run(tracking.find_run(client, exp_id, name))
    assert parent.info.run_id == outcome.parent_run_id
    assert parent.info.status == "FINISHED" and parent.data.tags[KIND_TAG] == "comparison"
    assert parent.data.params["variant.paper"] == "--arch lenet5 --lr 0.05 --no-crop-flip --pca-std 0"

    children = {}
    for v in variants:
        run = client.get_run(tracking.find_run(client, exp_id, f"{name}-{v.name}"))
        children[v.name] = run
        assert run.info.status == "FINISHED"
        assert run.data.tags[tracking.PARENT_TAG] == parent.info.run_id and run.data.tags[VARIANT_TAG] == v.name
        assert run.data.params["arch"] == "lenet5" and run.data.params["epochs"] == "1"
        for key in ("val_top1_err", "val_top5_err"):
            assert len(client.get_metric_history(run.info.run_id, key)) == 1, (v.name, key)
    trained = children["paper"]
    for key in ("images_per_sec", "input_stall_frac", "train_top1_err"):
        assert len(client.get_metric_history(trained.info.run_id, key)) == 1, key
    assert trained.data.metrics["num_params"] == 60_000  # its RBF centres are buffers: any number of classes
    assert trained.data.metrics["forward_gflop"] == pytest.approx(0.00065136)  # as --list counts it, at 32x32
    assert 0 <= trained.data.metrics["train_top1_err"] <= 100
    own = trained.data.params  # the variant's own flags reached its run, over the comparison's
    assert (own["lr"], own["crop_flip"], own["pca_std"], own["batch_size"]) == ("0.05", "False", "0.0", "12")
    rescored = children["ten-crops"]
    assert rescored.data.params["rescored_run"] == children["paper"].info.run_id
    assert rescored.data.params["eval_crop"] == "ten" and "images_per_sec" not in rescored.data.metrics
    ten = rescored.data.metrics["val_top1_err"]
    assert ten * 15 / 100 == pytest.approx(round(ten * 15 / 100), abs=1e-6)  # whole images of the 15
    assert "scored with --eval-crop ten" in out

    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"comparison.md", "comparison.csv", "comparison_curves.png", "ablations.md",
            "ablation_curves.png"} <= artifacts
    table = pd.read_csv(client.download_artifacts(parent.info.run_id, "comparison.csv", str(tmp_path)))
    assert list(table["variant"]) == ["paper", "ten-crops"] and list(table["epochs"]) == [1, 1]
    rate = trained.data.metrics["images_per_sec"]  # both rows': ten crops score the paper row's network
    for _, row in table.iterrows():
        child = children[row["variant"]].data.metrics
        assert row["val_top1_err"] == pytest.approx(child["val_top1_err"])
        assert row["val_top5_err"] == pytest.approx(child["val_top5_err"])
        assert row["img_per_sec"] == pytest.approx(rate)
        assert row["input_stall_frac"] == pytest.approx(trained.data.metrics["input_stall_frac"])
        assert row["train_s"] == pytest.approx(36 / rate)  # 3 batches of 12
        assert row["params"] == 60_000
    md = Path(client.download_artifacts(parent.info.run_id, "comparison.md", str(tmp_path))).read_text()
    assert "| paper | `--arch lenet5 --lr 0.05 --no-crop-flip --pca-std 0` | FINISHED | 1 | 60,000 |" in md
    assert md.split("\n\n", 1)[1].strip() in out  # the job prints the same table
    study = Path(client.download_artifacts(parent.info.run_id, "ablations.md", str(tmp_path))).read_text()
    assert "| the paper's difference |" in study and "| -1.5 / -1.3 |" in study  # ten crops' claim
    assert study.split("\n\n", 1)[1].strip() in out
    for png in ("comparison_curves.png", "ablation_curves.png"):
        path = Path(client.download_artifacts(parent.info.run_id, png, str(tmp_path)))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = compare(cfg, variants)  # the same comparison again: every child is finished
    out = capsys.readouterr().out
    assert out.count("not retrained") == 1 and "not scored again" in out and "[train]" not in out
    assert again.parent_run_id == parent.info.run_id
    for v, run in children.items():
        assert client.get_run(run.info.run_id).info.end_time == run.info.end_time, v  # nothing touched it
        assert len(client.get_metric_history(run.info.run_id, "val_top1_err")) == 1
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
