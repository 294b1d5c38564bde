"""Several training variants on one dataset, under one budget, recorded as one MLflow
parent run with a child run per variant (the sweep's nesting).

A variant is a name and a set of `jobs/train.py` flags: ``--arch resnet18`` is one, and
so would an ablation of AlexNet be (``--lrn none``). Variants train one after another,
each through `alexnet.trainer.fit` under the name ``<comparison>-<variant>``, so a rerun
of the comparison resumes an unfinished child where its checkpoint left it and skips a
finished one. The report (a table and a plot) is built afterwards from the children's
MLflow runs alone, so it describes what each child logged, whichever process trained it.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from torch import nn

from alexnet import ablations, models, tracking
from alexnet import members as mb
from alexnet.config import TrainConfig, _f, name_checks, require, train_config_for
from alexnet.data import manifest as mf
from alexnet.ensemble import score, tally
from alexnet.errors import UserError
from alexnet.flops import forward_flops_per_image, training_flops_per_image
from alexnet.plots import ablation_curves, comparison_curves
from alexnet.recipe import model_args
from alexnet.store import open_location
from alexnet.trainer import (
    changes_since_start,
    check_resume,
    default_name,
    fit,
    run_lock,
    run_params,
    storage_uri,
)

KIND_TAG = "alexnet.kind"  # "comparison" on the parent run
VARIANT_TAG = "alexnet.variant"  # the variant's name on each child run
COST_METRICS = ("num_params", "forward_gflop", "train_gflop")  # logged on each child, at step 0


@dataclass
class CompareConfig:
    data: str = _f("data/digits", "prepared data (jobs/prepare_data.py): a directory or a URI, s3://bucket/prefix")
    archs: tuple[str, ...] = _f(tuple(models.names()), "networks to compare, comma-separated; each is the variant "
                                                       "`--arch NAME` (default: every network: "
                                                       f"{', '.join(models.names())})")
    train_preset: str = _f("", "every variant starts from this jobs/train.py preset (default: each network's "
                               "paper recipe)")
    train_args: str = _f("", "more jobs/train.py flags for every variant, e.g. \"--batch-size 64\"")
    ablations: tuple[str, ...] = _f((), "instead of --archs: the paper's ablations of AlexNet, each a variant beside "
                                       f"the paper's network ('{ablations.BASELINE}'): all, or a list of "
                                       f"{', '.join(a.name for a in ablations.ABLATIONS)} (docs/ablations.md)")
    train_err_threshold: float = _f(25.0, "--ablations: the training top-1 error (%%) whose epochs and time the "
                                          "report gives for the training-speed claims (the paper's figure 1: 25)")
    variant_args: str = _f("", "flags for single variants, after --train-args: \"NAME: FLAGS; NAME: FLAGS\", "
                               "e.g. \"lenet5: --batch-size 16 --epochs 8\"")
    epochs: int = _f(0, "epochs of every variant whose --variant-args give no --epochs (0 = each variant's own, "
                        "from its preset, recipe and --train-args)")
    list: bool = _f(False, "print every network's parameters and GFLOP per image at its native input "
                           "(1000 classes), and train nothing")
    json: str = _f("", "write that list as JSON to this file (implies --list)")
    name: str = _f("", "comparison name; rerunning with the same name skips finished variants and resumes "
                       "unfinished ones (default: a new name)")
    experiment: str = _f("alexnet-compare", "MLflow experiment of the parent run and its variants")
    storage: str = _f("runs", "where Ray Train keeps the variants' checkpoints")

    def __post_init__(self) -> None:
        self.archs = tuple(a.strip() for a in self.archs if a.strip())
        self.ablations = tuple(a.strip() for a in self.ablations if a.strip())
        unknown = [a for a in self.archs if a not in models.ARCHS]
        per_variant = parse_variant_args(self.variant_args)
        names = ([ablations.BASELINE, *(a.name for a in ablations.chosen(self.ablations))] if self.ablations
                 else list(self.archs))
        require([
            (not unknown, f"--archs: unknown network(s) {', '.join(unknown)}; the networks are "
                          f"{', '.join(models.names())}"),
            (not ablations.unknown(self.ablations),
             f"--ablations: unknown ablation(s) {', '.join(ablations.unknown(self.ablations))}; they are all, "
             f"{', '.join(a.name for a in ablations.ABLATIONS)}"),
            (0 < self.train_err_threshold <= 100,
             f"--train-err-threshold must be a percentage in (0, 100], got {self.train_err_threshold}"),
            (self.list or bool(self.json) or bool(self.archs), "--archs names no network to compare"),
            (len(set(self.archs)) == len(self.archs), f"--archs {','.join(self.archs)} names a network twice"),
            (not set(per_variant) - set(names),
             f"--variant-args names {', '.join(sorted(set(per_variant) - set(names)))}, which is not one of the "
             f"variants ({','.join(names)})"),
            (self.epochs >= 0, f"--epochs must be non-negative (0 = each variant's own), got {self.epochs}"),
            *name_checks("--name", self.name),
        ])


# What `make compare` runs: five networks that fit 2 CPU cores on the embedded digits,
# within 30 minutes in all (sized from AlexNet's measured 31 img/s and the networks'
# FLOPs to take about 20: README.md). Every network gets the demo preset's batch 64, lr
# 0.01 and 2 epochs, except LeNet-5, whose recipe has no momentum and whose FLOPs per
# image are ~1/2000 of AlexNet's: 8 epochs at batch 16, bound by the input pipeline.
COMPARE_PRESETS: dict[str, dict[str, Any]] = {
    "digits": {
        "data": "data/digits",
        "archs": ("lenet5", "alexnet", "zfnet", "resnet18", "googlenet"),
        "train_preset": "digits",
        "epochs": 2,
        "variant_args": "lenet5: --epochs 8 --batch-size 16",
        "experiment": "alexnet-digits-compare",
    },
    # What `make ablations` runs: the paper's network and its nine trained ablations on
    # the embedded digits, 3 epochs each (the demo preset otherwise), and ten crops
    # re-scoring the first: within 45 minutes on 2 CPU cores (README.md). At 3 epochs the
    # training error is still falling, so the speed claims are read at 50%.
    "ablations": {
        "data": "data/digits",
        "ablations": ("all",),
        "train_preset": "digits",
        "epochs": 3,
        "train_err_threshold": 50.0,
        "experiment": "alexnet-digits-ablations",
    },
}


def parse_variant_args(text: str) -> dict[str, str]:
    """"NAME: FLAGS; NAME: FLAGS" -> {NAME: FLAGS} (a name given twice gets both)."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, flags = part.partition(":")
        if not sep or not name.strip():
            raise UserError(f"--variant-args {text!r}: expected \"NAME: FLAGS; NAME: FLAGS\"")
        out[name.strip()] = f"{out.get(name.strip(), '')} {flags.strip()}".strip()
    return out


@dataclass(frozen=True)
class Variant:
    """One contender: its child run is ``<comparison>-<name>``; `flags` are jobs/train.py
    flags, added after the comparison's --train-args (so they win over them). A variant
    that `rescores` another trains nothing: it scores that variant's final network as its
    own flags evaluate (an ablation of the test protocol, `--eval-crop ten`)."""

    name: str
    flags: str
    rescores: str = ""


def arch_variants(cfg: CompareConfig) -> list[Variant]:
    extra = parse_variant_args(cfg.variant_args)
    return [Variant(a, f"--arch {a} {extra.get(a, '')}".strip()) for a in cfg.archs]


def ablation_variants(cfg: CompareConfig) -> list[Variant]:
    """The paper's AlexNet, then each chosen ablation of it (`alexnet.ablations`)."""
    extra = parse_variant_args(cfg.variant_args)
    base = ablations.BASELINE
    return [Variant(base, f"--arch alexnet {extra.get(base, '')}".strip()),
            *(Variant(a.name, f"--arch alexnet {a.flags} {extra.get(a.name, '')}".strip(), a.rescores)
              for a in ablations.chosen(cfg.ablations))]


def variants_of(cfg: CompareConfig) -> list[Variant]:
    return ablation_variants(cfg) if cfg.ablations else arch_variants(cfg)


def variant_config(cfg: CompareConfig, variant: Variant, name: str) -> TrainConfig:
    """The variant's training config: jobs/train.py's from the comparison's preset, its
    --train-args, its --epochs and then the variant's own flags (each later one wins), with
    the comparison's experiment and storage."""
    epochs = f"--epochs {cfg.epochs}" if cfg.epochs else ""
    train = train_config_for(str(open_location(cfg.data)), cfg.train_preset,
                             f"{cfg.train_args} {epochs} {variant.flags}")
    return replace(train, experiment=cfg.experiment, storage=storage_uri(cfg.storage), name=f"{name}-{variant.name}")


# --- what a network costs --------------------------------------------------------------

@dataclass(frozen=True)
class Cost:
    params: int
    forward_gflop: float
    train_gflop: float


def network_cost(build: Callable[[], nn.Module], image_size: int) -> Cost:
    """Counted on the meta device (shapes only: no arithmetic, no memory), so every
    network is listed in about a second. `params` are the trainable parameters the
    evaluation forward pass uses: GoogLeNet's auxiliary heads train but never predict,
    so its count is the published 6,624,904. The training step's FLOPs include them."""
    with torch.device("meta"):
        net = build()
    used: set[nn.Module] = set()
    hooks = [m.register_forward_hook(lambda m, _args, _out: used.add(m)) for m in net.modules()]
    try:
        forward = forward_flops_per_image(net.eval(), image_size, device="meta")
    finally:
        for hook in hooks:
            hook.remove()
    params = sum(p.numel() for m in used for p in m.parameters(recurse=False) if p.requires_grad)
    net.train()  # GoogLeNet's auxiliary heads run in training
    for m in net.modules():  # batch norm counts no FLOPs, and in training refuses a 1x1 map of one image
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    train = training_flops_per_image(net, image_size, device="meta")
    return Cost(params, forward / 1e9, train / 1e9)


def arch_list() -> list[dict[str, Any]]:
    """Every registered network at 1000 classes and its native input (`--list`)."""
    rows = []
    for name in models.names():
        arch = models.get(name)
        cost = network_cost(lambda arch=arch: arch.builder(1000), arch.input_size)
        rows.append({"arch": name, "params": cost.params, "forward_gflop": cost.forward_gflop,
                     "train_gflop": cost.train_gflop, "input_size": arch.input_size})
    return rows


def arch_list_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'arch':<18}{'params':>14}{'input':>7}{'GFLOP fwd':>11}{'GFLOP train':>13}"]
    lines += [f"{r['arch']:<18}{r['params']:>14,}{r['input_size']:>7}{r['forward_gflop']:>11.3f}"
              f"{r['train_gflop']:>13.3f}" for r in rows]
    return "\n".join(lines)


def write_arch_list(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    Path(path).write_text(json.dumps(rows, indent=2) + "\n")
    return Path(path)


# --- running ----------------------------------------------------------------------------

@dataclass
class Row:
    """A variant's line in the report, from its MLflow run. `seconds` is the cumulative
    training time at the end of each epoch; `top1`/`top5` the validation errors (%)."""

    variant: str
    flags: str
    status: str  # the child run's (FINISHED, FAILED, KILLED, RUNNING) or NOT_RUN
    epochs: int
    params: int
    forward_gflop: float
    train_gflop: float
    img_per_sec: float  # median over the epochs: the first one also pays the pipeline's start
    input_stall_frac: float  # median over the epochs
    train_s: float
    val_top1_err: float
    val_top5_err: float
    seconds: list[float]
    top1: list[float]
    top5: list[float]
    run_id: str = ""
    train_top1: list[float] = field(default_factory=list)  # training top-1 error (%) by epoch


@dataclass
class ComparisonOutcome:
    parent_run_id: str
    name: str
    rows: list[Row]
    failed: list[str]


def compare(cfg: CompareConfig, variants: list[Variant], lock: bool = True) -> ComparisonOutcome:
    """Train (or resume, or skip when finished) every variant on the connected Ray
    cluster, one after another, then report. Holds the lock on the comparison's name,
    which covers its children (named after it); `lock=False` where the caller holds it."""
    name = cfg.name or default_name("compare")
    configs = [variant_config(cfg, v, name) for v in variants]
    with run_lock(cfg.storage, name, "comparison") if lock else nullcontext():
        return _compare_locked(cfg, name, variants, configs)


def _compare_locked(cfg: CompareConfig, name: str, variants: list[Variant],
                    configs: list[TrainConfig]) -> ComparisonOutcome:
    data_root = open_location(cfg.data)
    manifest, _ = mf.load(data_root)
    client = tracking.client()
    exp_id = tracking.experiment_id(client, cfg.experiment)
    params = {**{k: v for k, v in asdict(cfg).items() if k not in ("list", "json")},
              "data": str(data_root), "storage": storage_uri(cfg.storage), "name": name,
              **{f"variant.{v.name}": v.flags for v in variants}}
    check_comparison_resume(client, exp_id, name, params, f"--name {name} resumes the comparison")
    for variant, train in zip(variants, configs, strict=True):  # a changed child is refused before any trains
        child = run_params(train, train.name, manifest)
        if variant.rescores:  # no checkpoint of its own: only its settings must be the same
            check_comparison_resume(client, exp_id, train.name, child,
                                    f"--name {name} resumes variant '{variant.name}'")
        else:
            check_resume(client, exp_id, train.name, child)
    parent_run_id, resumed = tracking.start_or_resume_run(client, exp_id, name, params, {KIND_TAG: "comparison"})
    print(f"[compare] MLflow parent run {parent_run_id} ({'resumed' if resumed else 'new'}) '{name}' in "
          f"experiment '{cfg.experiment}' at {client.tracking_uri}", flush=True)
    failed: list[str] = []
    try:
        for i, (variant, train) in enumerate(zip(variants, configs, strict=True), start=1):
            print(f"[compare] {i}/{len(variants)} {variant.name} ({variant.flags}): {train.epochs} epoch(s) at "
                  f"batch {train.batch_size}, run '{train.name}'", flush=True)
            if variant.rescores:
                base = dict(zip((v.name for v in variants), configs, strict=True))[variant.rescores]
                try:
                    rescore(client, exp_id, parent_run_id, variant, train, base, data_root, manifest)
                except UserError as e:  # its network did not train: the others are reported still
                    failed.append(variant.name)
                    print(f"[compare] {variant.name} failed ({e})", flush=True)
                continue
            run_id = finished_run(client, exp_id, train)
            if run_id is not None:
                print(f"[compare] {variant.name}: run {run_id} has finished its {train.epochs} epoch(s) already; "
                      "not retrained", flush=True)
            else:
                try:
                    run_id = fit(train, tags={tracking.PARENT_TAG: parent_run_id, VARIANT_TAG: variant.name},
                                 lock=False, checked=(data_root, manifest)).run_id
                except UserError:
                    raise
                except Exception as e:  # e.g. a diverged loss: the other variants still run
                    failed.append(variant.name)
                    reason = (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]
                    print(f"[compare] {variant.name} failed ({reason}); going on with the others", flush=True)
                    continue
            log_cost(client, run_id, train, manifest.num_classes)
        rows = report_rows(client, exp_id, variants, configs)
        record_report(client, parent_run_id, name, rows,
                      ablation_threshold=cfg.train_err_threshold if cfg.ablations else None)
    except BaseException as e:
        client.set_terminated(parent_run_id, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    client.set_terminated(parent_run_id, "FAILED" if failed else "FINISHED")
    return ComparisonOutcome(parent_run_id, name, rows, failed)


def check_comparison_resume(client: MlflowClient, exp_id: str, name: str, params: dict[str, Any],
                            resumed: str) -> None:
    """A rerun with the same --name must compare the same variants the same way (its
    params are the first start's); only --epochs may change, which trains every variant
    further. Also for a rescoring variant's run, which has no checkpoint of its own
    (`resumed` says in the refusal which run the rerun resumes)."""
    run_id, changed = changes_since_start(client, exp_id, name, params)
    if changed:
        raise UserError(f"{resumed} (MLflow run {run_id}), which was started with other settings: "
                        f"{'; '.join(changed)}. Rerun with its settings, or pass another --name")


def rescore(client: MlflowClient, exp_id: str, parent_run_id: str, variant: Variant, train: TrainConfig,
            base: TrainConfig, data_root: Path, manifest: mf.Manifest) -> str:
    """Score the final network of `base`'s run as `train` evaluates (its --eval-crop), with
    the ensemble's scoring actors, and record it as the variant's child run: its params
    (and `rescored_run`), the validation errors at the base run's last epoch. A finished
    child is kept as it is."""
    run_id = tracking.find_run(client, exp_id, train.name)
    if run_id is not None and client.get_run(run_id).info.status == "FINISHED":
        print(f"[compare] {variant.name}: run {run_id} has scored its network already; not scored again", flush=True)
        return run_id
    base_id = finished_run(client, exp_id, base)
    if base_id is None:
        raise UserError(f"it scores the network of variant '{variant.rescores}', whose run '{base.name}' did not "
                        "finish")
    member = mb.load_member(client, base_id)
    ds = score(str(data_root), manifest, [member], "prob", train.eval_crop, 2 * train.per_worker_batch, train.device)
    t = tally(ds.iter_batches(batch_size=2 * train.per_worker_batch, batch_format="numpy"), 1, "prob")
    top1, top5 = t.errors(manifest.splits["val"].skipped)["members"][0]
    run_id, _ = tracking.start_or_resume_run(
        client, exp_id, train.name, {**run_params(train, train.name, manifest), "rescored_run": base_id},
        {tracking.PARENT_TAG: parent_run_id, VARIANT_TAG: variant.name})
    last_epoch = max(tracking.logged_steps(client, base_id, "val_top1_err"))
    tracking.log_epoch(client, run_id, last_epoch, {"val_top1_err": top1, "val_top5_err": top5})
    client.set_terminated(run_id, "FINISHED")
    print(f"[compare] {variant.name}: run {base_id}'s network scored with --eval-crop {train.eval_crop}: top-1 "
          f"{top1:.2f}%, top-5 {top5:.2f}%", flush=True)
    return run_id


def finished_run(client: MlflowClient, exp_id: str, train: TrainConfig) -> str | None:
    """The variant's run, if it has finished and logged all its epochs: rerunning `fit`
    on it would train nothing, but log its model and checkpoint again."""
    run_id = tracking.find_run(client, exp_id, train.name)
    if run_id is None or client.get_run(run_id).info.status != "FINISHED":
        return None
    return run_id if len(tracking.logged_steps(client, run_id, "val_top1_err")) >= train.epochs else None


def log_cost(client: MlflowClient, run_id: str, train: TrainConfig, num_classes: int) -> None:
    """The network's parameters and GFLOP per image as the variant trains it (its classes,
    options and input: the pipeline's 224 crops, resized inside a network that takes
    another size), once per run."""
    if set(COST_METRICS) <= set(client.get_run(run_id).data.metrics):
        return
    args = model_args(train, num_classes)
    cost = network_cost(lambda: models.from_model_args(args), models.PIPELINE_CROP)
    client.log_batch(run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in
                                      zip(COST_METRICS, (cost.params, cost.forward_gflop, cost.train_gflop),
                                          strict=True)])


# --- the report -------------------------------------------------------------------------

def by_step(client: MlflowClient, run_id: str, key: str) -> list[float]:
    """The metric's values in epoch order (each epoch is logged once: tracking.log_epoch)."""
    return [v for _, v in sorted({m.step: m.value for m in client.get_metric_history(run_id, key)}.items())]


def report_rows(client: MlflowClient, exp_id: str, variants: list[Variant], configs: list[TrainConfig]) -> list[Row]:
    rows: list[Row] = []
    nan = float("nan")
    for variant, train in zip(variants, configs, strict=True):
        run_id = tracking.find_run(client, exp_id, train.name)
        if run_id is None:
            rows.append(Row(variant.name, variant.flags, "NOT_RUN", 0, 0, nan, nan, nan, nan, 0.0, nan, nan,
                            [], [], []))
            continue
        run = client.get_run(run_id)
        top1, top5 = by_step(client, run_id, "val_top1_err"), by_step(client, run_id, "val_top5_err")
        if variant.rescores:  # the network, its cost and its training are the rescored variant's
            base = next(r for r in rows if r.variant == variant.rescores)
            rows.append(replace(base, variant=variant.name, flags=variant.flags, status=run.info.status,
                                val_top1_err=top1[-1] if top1 else nan, val_top5_err=top5[-1] if top5 else nan,
                                seconds=base.seconds[-1:], top1=top1[-1:], top5=top5[-1:], run_id=run_id))
            continue
        rates, stalls = by_step(client, run_id, "images_per_sec"), by_step(client, run_id, "input_stall_frac")
        # An epoch trains train_images // batch_size full batches (the pipeline drops the
        # last partial one); its training time is those images over its measured rate.
        p = run.data.params
        per_epoch = int(p["train_images"]) // int(p["batch_size"]) * int(p["batch_size"])
        seconds = [sum(per_epoch / r for r in rates[:k + 1]) for k in range(len(rates))]
        m = run.data.metrics
        rows.append(Row(
            variant.name, variant.flags, run.info.status, len(top1), int(m.get("num_params", 0)),
            m.get("forward_gflop", nan), m.get("train_gflop", nan),
            statistics.median(rates) if rates else nan, statistics.median(stalls) if stalls else nan,
            seconds[-1] if seconds else 0.0, top1[-1] if top1 else nan, top5[-1] if top5 else nan,
            seconds, top1, top5, run_id, by_step(client, run_id, "train_top1_err")))
    return rows


def _pct(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| variant | flags | status | epochs | params | GFLOP/img fwd | GFLOP/img train | img/s | input stall "
             "| training time | top-1 % | top-5 % | top-1 % by epoch |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.variant} | `{r.flags}` | {r.status} | {r.epochs} | {r.params:,} | {r.forward_gflop:.3f} "
                     f"| {r.train_gflop:.3f} | {r.img_per_sec:.1f} | {r.input_stall_frac:.0%} "
                     f"| {r.train_s / 60:.1f} min | {r.val_top1_err:.2f} | {r.val_top5_err:.2f} | {_pct(r.top1)} |")
    return "\n".join(lines)


def ablation_table(rows: list[Row], threshold: float) -> str:
    """Each ablation beside the paper's network (the first row) and the paper's claimed
    difference; the training error of the last epoch beside the validation error shows
    overfitting, and the epochs and training time to `threshold` % training error the
    training-speed claims."""
    base = rows[0]
    lines = [f"| variant | flags | status | epochs | top-1 % | top-5 % | top-1 vs {base.variant} | top-5 vs "
             f"{base.variant} | the paper's difference | training top-1 % | img/s | to {threshold:g}% training "
             "error | the paper's claim |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        a = ablations.BY_NAME.get(r.variant)
        paper = "-" if a is None or (a.top1 is None and a.top5 is None) else \
            f"{ablations.signed(a.top1)} / {ablations.signed(a.top5)}"
        reached = ablations.epochs_to(threshold, r.train_top1, r.seconds)
        speed = "-" if a is not None and a.rescores else (
            f"epoch {reached[0]}, {reached[1] / 60:.1f} min" if reached else f"not in {r.epochs} epoch(s)")
        delta = "-" if r is base else f"{ablations.signed(r.val_top1_err - base.val_top1_err, 2)}"
        delta5 = "-" if r is base else f"{ablations.signed(r.val_top5_err - base.val_top5_err, 2)}"
        train_err = f"{r.train_top1[-1]:.1f}" if r.train_top1 else "-"
        claim = "the paper's recipe" if a is None else a.claim
        lines.append(f"| {r.variant} | `{r.flags}` | {r.status} | {r.epochs} | {r.val_top1_err:.2f} "
                     f"| {r.val_top5_err:.2f} | {delta} | {delta5} | {paper} | {train_err} | {r.img_per_sec:.1f} "
                     f"| {speed} | {claim} |")
    return "\n".join(lines)


def csv_frame(rows: list[Row]) -> pd.DataFrame:
    records = []
    for r in rows:
        d = asdict(r)
        for key in ("seconds", "top1", "top5", "train_top1"):
            d[key] = ";".join(f"{v:.6g}" for v in d[key])  # one cell per variant, epochs in order
        records.append(d)
    return pd.DataFrame(records).rename(columns={"seconds": "train_s_by_epoch", "top1": "val_top1_err_by_epoch",
                                                 "top5": "val_top5_err_by_epoch",
                                                 "train_top1": "train_top1_err_by_epoch"})


def record_report(client: MlflowClient, parent_run_id: str, name: str, rows: list[Row],
                  ablation_threshold: float | None = None) -> None:
    """The parent's artifacts: the table as Markdown and CSV, and every variant's
    validation error against its training time; the same table is printed. An ablation
    study (`ablation_threshold` set) also gets `ablations.md` (each variant against the
    paper's network and the paper's claim) and `ablation_curves.png` (training and
    validation error by epoch, where overfitting shows as the gap between them)."""
    table = markdown_table(rows)
    print(f"[compare] '{name}': training time = each epoch's images over its measured img/s (validation "
          f"excluded); img/s and input stall are medians over the epochs\n{table}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        md = Path(tmp) / "comparison.md"
        md.write_text(f"# Comparison '{name}'\n\n{table}\n")
        csv = Path(tmp) / "comparison.csv"
        csv_frame(rows).to_csv(csv, index=False)
        curves = {r.variant: (r.seconds, r.top1) for r in rows if r.top1}
        paths = [md, csv, comparison_curves(curves, Path(tmp) / "comparison_curves.png", name)]
        if ablation_threshold is not None:
            study = ablation_table(rows, ablation_threshold)
            print(f"[compare] '{name}': the ablations against '{rows[0].variant}' and the paper's claims\n{study}",
                  flush=True)
            (Path(tmp) / "ablations.md").write_text(f"# Ablations '{name}'\n\n{study}\n")
            trained = {r.variant: (r.train_top1, r.top1) for r in rows
                       if r.top1 and not getattr(ablations.BY_NAME.get(r.variant), "rescores", "")}
            paths += [Path(tmp) / "ablations.md",
                      ablation_curves(trained, Path(tmp) / "ablation_curves.png", name)]
        for path in paths:
            client.log_artifact(parent_run_id, str(path))
