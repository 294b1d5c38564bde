"""checkpoint.pt holds tensors and plain values and is read with weights_only=True:
what training writes comes back whole, and whatever else is in the file is refused by
name, never unpickled. No Ray, no MLflow: the checkpoint module and the worker's two
checkpoint functions on real files."""

import math
import pickle
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path

import numpy as np
import pytest
import ray.train
import torch

from alexnet import checkpoint as ckpt
from alexnet import models
from alexnet.config import TrainConfig
from alexnet.errors import UserError
from alexnet.model import AlexNet
from alexnet.optim import build_optimizer
from alexnet.recipe import build_model, model_args
from alexnet.schedule import LRSchedule
from alexnet.worker import load_checkpoint, save_checkpoint


class WritesAFile:
    """Unpickling it writes `marker`: what a planted checkpoint can do on a plain torch.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message
    return message


def trained_state(cfg: TrainConfig, classes: int = 3) -> tuple[AlexNet, dict]:
    """What worker.report saves after an epoch: a network and the training's optimiser
    (two parameter groups) after a step, the schedule after an observed error, history,
    the config as a dict."""
    model = build_model(cfg, classes)
    optimizer = build_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.bias_lr_mult, cfg.bias_decay)
    model(torch.rand(2, 3, 224, 224) * 255).logsumexp(1).sum().backward()
    optimizer.step()
    schedule = LRSchedule(cfg.lr, cfg.lr_schedule, patience=cfg.lr_patience, max_drops=cfg.lr_max_drops,
                          steps=cfg.lr_steps, warmup_epochs=cfg.warmup_epochs)
    schedule.observe(61.5)
    history = [{"train_loss": 1.1, "val_top1_err": 61.5, "val_top5_err": float("nan"), "lr": 0.01,
                "images_per_sec": 30.0, "input_stall_frac": 0.05, "bad_images": 0.0, "val_images": 15.0}]
    return model.eval(), {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
        "epoch": 1, "history": history, "config": asdict(cfg), "model_args": model_args(cfg, classes),
        "rgb_mean": [127.3, 119.7, 104.9]}


def test_what_training_saves_comes_back_whole_through_weights_only(tmp_path: Path) -> None:
    cfg = TrainConfig(lr_schedule="step", lr_steps=(6, 8), bias_init="caffe")
    model, state = trained_state(cfg)
    save_checkpoint(str(tmp_path), state)
    torch.load(tmp_path / ckpt.CHECKPOINT_FILE, weights_only=True)  # torch's own safe reader accepts it

    back = load_checkpoint(ray.train.Checkpoint.from_directory(str(tmp_path)))
    assert back["config"] == asdict(cfg) and back["config"]["lr_steps"] == (6, 8)
    assert back["schedule"]["steps"] == (6, 8) and back["schedule"]["best"] == 61.5
    assert back["epoch"] == 1 and back["rgb_mean"] == state["rgb_mean"]
    assert math.isnan(back["history"][0]["val_top5_err"])
    assert back["model_args"]["arch"] == "alexnet"
    rebuilt = ckpt.load_weights(models.from_model_args(back["model_args"]), back["model"], "test").eval()
    assert isinstance(rebuilt, AlexNet)
    x = torch.rand(2, 3, 224, 224) * 255
    assert torch.equal(rebuilt(x), model(x))
    optimizer = build_optimizer(rebuilt, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.bias_lr_mult, cfg.bias_decay)
    optimizer.load_state_dict(back["optimizer"])
    assert [g["lr_mult"] for g in optimizer.param_groups] == [1.0, cfg.bias_lr_mult]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    assert all(torch.equal(optimizer.state[p]["momentum_buffer"], s["momentum_buffer"])
               for p, s in zip(params, back["optimizer"]["state"].values(), strict=True))
    schedule = LRSchedule(cfg.lr, "step", steps=cfg.lr_steps)
    schedule.load_state_dict(back["schedule"])
    assert schedule.best == 61.5


def test_numpy_scalars_become_numbers_and_other_objects_are_never_written(tmp_path: Path) -> None:
    ckpt.save(tmp_path / "a.pt", {"model": {}, "model_args": {}, "history": [{"loss": np.float32(0.5)}]})
    assert type(ckpt.load(tmp_path / "a.pt", "test")["history"][0]["loss"]) is float

    class Kind(StrEnum):
        STEP = "step"

    for bad, where in ((Path("x"), "['path']"), (Kind.STEP, "['path']"), ({1, 2}, "['path']")):
        with pytest.raises(TypeError, match=rf"checkpoint\{where}"):
            ckpt.save(tmp_path / "b.pt", {"model": {}, "model_args": {}, "path": bad})
    assert not (tmp_path / "b.pt").exists()


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_a_planted_checkpoint_is_refused_by_name_and_never_runs(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    payload = {"model": WritesAFile(marker), "model_args": {"num_classes": 3}}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(UserError) as e:
        ckpt.load(path, "member abc ('evil')")
    assert one_line(e).startswith("member abc ('evil'): checkpoint.pt holds objects that are not tensors or plain")
    assert "will not be unpickled" in str(e.value)
    with pytest.raises(UserError, match="holds objects that are not tensors"):  # the resume path too
        load_checkpoint(ray.train.Checkpoint.from_directory(str(tmp_path)))
    assert not marker.exists()


def test_a_torn_or_foreign_file_is_a_one_line_error(tmp_path: Path) -> None:
    ckpt.save(tmp_path / "whole.pt", {"model": AlexNet(3).features.state_dict(), "model_args": {}})
    whole = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "torn.pt").write_bytes(whole[: len(whole) // 2])  # a copy cut short
    with pytest.raises(UserError) as e:
        ckpt.load(tmp_path / "torn.pt", "run r1")
    assert one_line(e).startswith("run r1: torn.pt is not a readable checkpoint")
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="run r1: other.pt lacks model and model_args"):
        ckpt.load(tmp_path / "other.pt", "run r1")


def test_weights_of_an_older_layout_or_another_network_are_named_not_a_traceback() -> None:
    model = AlexNet(3)
    weights = dict(model.state_dict())
    fc = next(k for k in weights if k.startswith("classifier.") and k.endswith(".weight"))
    old = {("classifier.9.weight" if k == fc else k): v for k, v in weights.items()}  # an index-named layer
    with pytest.raises(UserError) as e:
        ckpt.load_weights(AlexNet(3), old, "member r1 ('seed0')")
    message = one_line(e)
    assert message.startswith("member r1 ('seed0'): its weights do not match this version's AlexNet")
    assert "older network layout (classifier indices changed in this version); retrain it" in message
    assert f"missing {fc}" in message and "unexpected classifier.9.weight" in message

    with pytest.raises(UserError) as e:  # fc8 for 10 classes into a 3-class network
        ckpt.load_weights(AlexNet(3), AlexNet(10).state_dict(), "run r2")
    assert "other shape" in one_line(e) and "retrain it" in str(e.value)
    with torch.device("meta"):  # the check alone needs no weights
        ckpt.check_weights(AlexNet(3), weights, "run r3")


def test_a_checkpoint_from_before_arch_rebuilds_as_the_alexnet_it_is(tmp_path: Path) -> None:
    """model_args written before networks had names (no `arch`, no `input_size`) and before
    the ablation switches (no `activation`, `pooling`, `remove_conv`, `kernels`) are an
    AlexNet's with the paper's layers: every loader (resume, ensemble members, predict, the
    MLflow model) rebuilds it through `models.from_model_args`, weights and all."""
    cfg = TrainConfig(bias_init="caffe", grouped=False)
    model, state = trained_state(cfg)
    assert {k: state["model_args"][k] for k in ("activation", "pooling", "remove_conv", "kernels")} == {
        "activation": "relu", "pooling": "overlapping", "remove_conv": 0, "kernels": "full"}
    old_args = {k: state["model_args"][k] for k in ("num_classes", "grouped", "lrn", "bias_init", "dropout")}
    assert old_args == {"num_classes": 3, "grouped": False, "lrn": "paper", "bias_init": "caffe", "dropout": 0.5}
    save_checkpoint(str(tmp_path), {**state, "model_args": old_args})
    back = load_checkpoint(ray.train.Checkpoint.from_directory(str(tmp_path)))
    rebuilt = ckpt.load_weights(models.from_model_args(back["model_args"]), back["model"], "old run").eval()
    assert type(rebuilt) is AlexNet
    x = torch.rand(2, 3, 224, 224) * 255
    assert torch.equal(rebuilt(x), model(x))
