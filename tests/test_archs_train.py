"""Every registered network trains an epoch on the real pipeline's batches, and GoogLeNet
(its auxiliary classifiers the one training path of its own) trains through
`jobs/train.py` itself, its JPEGs decoded on the worker (`--decode gpu`), and is assembled
into one ensemble with a LeNet-5 (at its own 32x32, resized on the device).

The full networks at 224 would take minutes each on 2 CPU cores, so the networks that
can take a smaller input get `--input-size 32` (the 224 crops resized on the device, as
LeNet-5's are); AlexNet and ZFNet, whose classifiers need 224, train at 224. The per-network
test runs the worker's own steps (the network, optimiser and schedule from the recipe,
`train_one_epoch`, `evaluate`, the checkpoint's state, a member rebuilt from it) over
batches that the Ray Data pipeline of `jobs/train.py` delivers: one Ray Train run costs
about 30 s on 2 cores whatever the network (its actors' start-ups), so one per network
would cost a third of the suite's time budget: tests/test_archs_job.py does that, with
`make test-archs`. AlexNet trains through `jobs/train.py` in tests/test_submit.py (two
workers, submitted to a Ray head), LeNet-5 in tests/test_object_store.py and through the
sweep's trials (the shared ensemble's members, tests/conftest.py).
"""

import re
from pathlib import Path

import mlflow.pytorch
import pandas as pd
import pytest
import torch
from job_loader import load_job
from mlflow.tracking import MlflowClient

from alexnet import checkpoint as ckpt
from alexnet import models, tracking
from alexnet.config import train_config_for
from alexnet.data import manifest as mf
from alexnet.data.pipeline import DataResources, eval_dataset, train_dataset
from alexnet.engine import evaluate, train_one_epoch
from alexnet.members import Member
from alexnet.optim import set_lr
from alexnet.recipe import build_model, build_optimizer_for, model_args, schedule_for
from alexnet.worker import checkpoint_state

BATCH = 36  # the 36 training images: an epoch is one step, the cheapest on 2 cores
JOB_BATCH = 12
CPU = torch.device("cpu")


def small_input(name: str) -> int:
    """32 where the network takes it; 0 (its own size) where its classifier fixes it."""
    return 0 if models.get(name).fixed_input else models.MIN_INPUT


@pytest.fixture(scope="module")
def pipeline_batches(ray_session, tiny_data: Path) -> tuple[list, list, torch.Tensor]:
    """One epoch of the training pipeline's batches (Ray Data actors: crops, flips, PCA
    jitter) and the validation split's, as the workers of jobs/train.py receive them."""
    manifest, _ = mf.load(tiny_data)
    res = DataResources(augment_actors=1, augment_cpus=0.5, read_cpus=0.5)
    train = list(train_dataset(str(tiny_data), manifest, res, seed=0).iter_torch_batches(
        batch_size=BATCH, drop_last=True))
    val = list(eval_dataset(str(tiny_data), manifest, res).iter_torch_batches(batch_size=2 * BATCH))
    return train, val, torch.tensor(manifest.rgb_mean, dtype=torch.float32)


@pytest.mark.parametrize("name", models.names())
def test_every_network_trains_an_epoch_and_rebuilds_from_its_checkpoint(name: str, tiny_data: Path,
                                                                        pipeline_batches) -> None:
    train, val, mean = pipeline_batches
    cfg = train_config_for(str(tiny_data), train_args=f"--arch {name} --batch-size {BATCH} --input-size "
                                                      f"{small_input(name)} --lr 0.001")
    torch.manual_seed(0)
    model = build_model(cfg, 3)
    optimizer, schedule = build_optimizer_for(model, cfg), schedule_for(cfg)
    set_lr(optimizer, schedule.lr(0), cfg.momentum_rule)
    first, last = (p.detach().clone() for p in (next(model.parameters()), list(model.parameters())[-1]))
    stats = train_one_epoch(model, optimizer, train, CPU, mean, aux_weight=models.get(name).aux_loss_weight)
    assert stats.images == 36 and stats.bad_images == 0
    assert torch.isfinite(torch.tensor(stats.loss_sum)) and stats.loss_sum > 0
    params = list(model.parameters())
    assert not torch.equal(first, params[0]) and not torch.equal(last, params[-1])  # the step reached both ends
    counts = evaluate(model, val, CPU, mean)
    assert counts[2] == 15  # every validation image scored once

    state = ckpt.plain(checkpoint_state(model, optimizer, schedule, 0, [], cfg, 3, mean.tolist()))
    assert state["model_args"] == model_args(cfg, 3) and state["model_args"]["arch"] == name
    member = Member(run_id="r", name=name, seed=0, classes=["a", "b", "c"], model_args=state["model_args"],
                    weights=state["model"], rgb_mean=mean.tolist())
    x = torch.rand(2, 3, 224, 224) * 255 - 127  # the pipeline's crops, whatever the network's input
    with torch.no_grad():
        assert torch.equal(member.build()(x), model.eval()(x))
    # A run ends by logging its network as an MLflow model through torch.export, with a
    # dynamic batch as MLflow exports it (`tracking.log_pytorch_model`): it must trace.
    exported = torch.export.export(model.eval(), (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    with torch.no_grad():
        assert torch.allclose(exported.module()(x[:1]), model(x[:1]), atol=1e-4)


def test_googlenet_trains_through_the_job_and_joins_a_lenet5_in_one_ensemble(
        ray_session, trained_ensemble, tiny_data: Path, tiny_src: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    """`python jobs/train.py --arch googlenet --decode gpu` (in this process): its paper's
    recipe under the flags, its auxiliary losses in the Ray Train worker, the JPEGs decoded
    by the worker on its device (the CPU here: `--decode gpu`'s code end to end), an MLflow
    model without the auxiliary heads; then `jobs/ensemble.py` and `jobs/predict.py` over
    it and a LeNet-5 member (the shared ensemble's, at its own 32x32): each member is
    rebuilt from its own checkpoint, so each scores as its own run did."""
    name = f"googlenet-{tmp_path.name}"
    assert load_job("train").main(["--arch", "googlenet", "--input-size", "32", "--data", str(tiny_data),
                                   "--epochs", "1", "--batch-size", str(JOB_BATCH), "--lr", "0.01",
                                   "--storage", str(tmp_path / "runs"), "--experiment", "test-archs",
                                   "--name", name, "--log-every", "1", "--decode", "gpu"]) == 0
    assert "JPEGs decoded by the workers, on their CPUs" in capsys.readouterr().out
    client = MlflowClient(tracking.tracking_uri())
    googlenet = tracking.find_run(client, client.get_experiment_by_name("test-archs").experiment_id, name)
    run = client.get_run(googlenet)
    assert run.info.status == "FINISHED" and run.data.params["arch"] == "googlenet"
    assert run.data.params["batch_size"] == str(JOB_BATCH) and run.data.params["lr_factor"] == "0.96"  # its recipe
    assert run.data.params["dropout"] == "0.4" and run.data.params["decode"] == "gpu"
    assert run.data.metrics["bad_images"] == 0 and run.data.metrics["val_images"] == 15
    assert run.data.metrics["train_loss"] > 0  # every training image decoded on the worker and trained on
    state = ckpt.load(client.download_artifacts(googlenet, "checkpoint/checkpoint.pt", str(tmp_path)), googlenet)
    assert state["model_args"] == {"arch": "googlenet", "num_classes": 3, "input_size": 32, "dropout": 0.4}
    assert any(k.startswith("net.aux1.") for k in state["model"])  # trained with its auxiliary classifiers
    exported = mlflow.pytorch.load_model(f"runs:/{googlenet}/model")  # the MLflow model takes the 224 crops
    assert exported(torch.zeros(2, 3, 224, 224)).shape == (2, 3)  # the main classifier alone
    assert mlflow.models.get_model_info(f"runs:/{googlenet}/model").metadata["arch"] == "googlenet"

    lenet = trained_ensemble.member_run_ids[0]
    lenet_args = ckpt.load(client.download_artifacts(lenet, "checkpoint/checkpoint.pt", str(tmp_path / "l")), lenet)
    assert lenet_args["model_args"] == {"arch": "lenet5", "num_classes": 3, "input_size": 32}
    capsys.readouterr()
    assert load_job("ensemble").main(["--data", str(tiny_data), "--runs", f"{googlenet},{lenet}",
                                      "--experiment", "test-archs"]) == 0
    out = capsys.readouterr().out
    assert "(googlenet, seed 0)" in out and "(lenet5, seed 0)" in out
    ensemble_id = re.search(r"done\. MLflow run (\w+):", out).group(1)
    ensemble = client.get_run(ensemble_id).data
    for i, member in enumerate((googlenet, lenet), start=1):
        logged = client.get_run(member).data.metrics["val_top1_err"]
        assert ensemble.metrics[f"member_{i}_top1_err"] == pytest.approx(logged)

    preds = tmp_path / "mixed.csv"
    assert load_job("predict").main(["--run", ensemble_id, "--images", str(tiny_src / "val"),
                                     "--out", str(preds)]) == 0
    assert len(pd.read_csv(preds)) == 15
