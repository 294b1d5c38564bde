"""The training job's one typed config. Defaults are the paper's recipe (section 5);
presets change only what a small machine or dataset needs, and say so."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from typing import Any, Literal

from alexnet import models
from alexnet.errors import UserError


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def require(checks: list[tuple[bool, str]]) -> None:
    """Raise the first failed check's message: one line naming the flag and the fix."""
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def finite_floats(config: Any) -> list[tuple[bool, str]]:
    """Every float setting (and every float in a list setting) must be a number: `inf`
    and `nan` parse as floats and pass every `> 0` check, then train to nan or hang a
    sampler. Generic over the fields, so settings added later are covered too."""
    checks = []
    for name, value in vars(config).items():
        values = value if isinstance(value, tuple) else (value,)
        bad = [v for v in values if isinstance(v, float) and not math.isfinite(v)]
        flag = "--" + name.replace("_", "-")
        checks.append((not bad, f"{flag} must be a finite number, got {value}"))
    return checks


def name_checks(flag: str, name: str) -> list[tuple[bool, str]]:
    """A run name becomes a folder under --storage and a value in MLflow search filters,
    which have no escape for a string holding both kinds of quote."""
    return [
        (not ("/" in name or "\\" in name or name in (".", "..")),
         f"{flag} {name!r}: a name must not contain / or \\ or be . or .. (it names a folder under --storage)"),
        (not ("'" in name and '"' in name),
         f"{flag} {name!r}: use either ' or \" in a name, not both (MLflow's search filters cannot match it)"),
    ]


@dataclass
class TrainConfig:
    data: str = _f("data/digits", "prepared data (jobs/prepare_data.py): a directory or a URI, s3://bucket/prefix")
    arch: str = _f("alexnet", f"the network: {', '.join(models.names())}; its paper's recipe sets the defaults "
                              "of the other settings (docs/architectures.md), which flags and --preset override")
    input_size: int = _f(0, "side of the network's input: the 224 crops are resized to it on the device (0 = the "
                            "network's native size: 32 for lenet5, 224 for the others)")
    epochs: int = _f(90, "epochs to train")
    workers: int = _f(1, "Ray Train workers (DDP processes); on GPUs each takes one, so pass the GPU count "
                         "to use them all")
    batch_size: int = _f(128, "global batch size, split evenly over the workers")
    lr: float = _f(0.01, "initial learning rate (linear scaling: 0.01 * batch / 128)")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(5e-4, "SGD weight decay")
    lr_schedule: Literal["plateau", "step"] = _f(
        "plateau", "plateau: multiply by --lr-factor (the paper: divide by 10) when val top-1 error stops "
        "improving; step: multiply by --lr-factor at --lr-steps")
    lr_patience: int = _f(3, "plateau: drop the lr once this many epochs in a row have not improved on the "
                             "best val top-1 error")
    lr_max_drops: int = _f(3, "plateau: drop the lr at most this many times (the paper: three; 0 = no limit)")
    lr_steps: tuple[int, ...] = _f((30, 60, 80), "step: epochs at which the lr is multiplied by --lr-factor")
    lr_factor: float = _f(0.1, "what each drop multiplies the lr by (0.1: the paper's division by 10)")
    warmup_epochs: int = _f(0, "epochs of linear lr warm-up from lr/10 (0 = none, the paper)")
    momentum_rule: Literal["paper", "pytorch"] = _f(
        "paper", "paper: the velocity keeps the lr it was built with across lr changes (section 5's equations); "
                 "pytorch: torch.optim.SGD's, which applies a new lr to the whole velocity at once")
    bias_lr_mult: float = _f(2.0, "biases' learning rate as a multiple of the weights' (2: cuda-convnet's and "
                                  "Caffe's AlexNet; the paper's text is silent)")
    bias_decay: bool = _f(False, "apply weight decay to biases too (off: cuda-convnet's and Caffe's AlexNet)")
    norm_decay: bool = _f(True, "apply weight decay to normalisation layers' scales (batch norm); their biases "
                                "follow --bias-decay")
    grouped: bool = _f(True, "alexnet: conv2/4/5 in two groups, the paper's two-GPU split")
    lrn: Literal["paper", "cuda-convnet", "none"] = _f(
        "paper", "alexnet, zfnet: LRN alpha convention: the paper's formula, or cuda-convnet's alpha/n; none "
                 "leaves LRN out (section 3.3's ablation)")
    activation: Literal["relu", "tanh"] = _f(
        "relu", "alexnet: the non-linearity of every layer: relu (section 3.1) or tanh (the saturating unit of "
                "its figure 1)")
    pooling: Literal["overlapping", "plain"] = _f(
        "overlapping", "alexnet: max pooling over 3x3 windows at stride 2 (overlapping, section 3.4) or 2x2 at "
                       "stride 2 (plain, the non-overlapping pooling it compares with)")
    remove_conv: int = _f(0, "alexnet: leave out conv3 or conv4, the next layer reading the maps before it "
                             "(section 7: removing a middle layer costs about 2 points of top-1; 0 = none)")
    kernels: Literal["full", "half"] = _f(
        "full", "alexnet: half: section 3.2's one-GPU net, half the kernels in conv1-4 (conv5 and the fully "
                "connected layers kept, its footnote); use it with --no-grouped")
    bias_init: Literal["paper", "caffe"] = _f(
        "paper", "alexnet: biases of conv2/4/5, fc6/7: 1 (paper) or 0.1 (Caffe, trains more reliably)")
    dropout: float = _f(0.5, "dropout probability on the outputs of fc6 and fc7 (section 4.2; vgg, zfnet alike); "
                             "googlenet: before its classifier")
    pca_std: float = _f(0.1, "std of the PCA colour jitter's alpha (section 4.1: 0.1; 0 = no jitter)")
    crop_flip: bool = _f(True, "random 224 crops and horizontal flips (section 4.1); off: the centre crop, "
                               "never mirrored (--no-crop-flip)")
    eval_crop: Literal["center", "ten"] = _f("center", "validation: centre 224 crop, or 10 crops averaged")
    seed: int = _f(0, "seed of the run: the initialisation, each rank's and epoch's dropout masks, each "
                      "epoch's crops, flips and colour jitter")
    device: Literal["auto", "cpu", "cuda"] = _f("auto", "auto: GPUs when the cluster has them")
    amp: bool = _f(True, "bf16 autocast on GPU (ignored on CPU)")
    channels_last: bool = _f(True, "channels-last memory layout on GPU (ignored on CPU)")
    decode: Literal["cpu", "gpu", "auto"] = _f(
        "cpu", "where training JPEGs are decoded and cropped: cpu (the augmentation actors); gpu (each training "
               "worker, in batches on its device: nvJPEG on a GPU, for nodes with few CPU cores per GPU; a CPU "
               "worker decodes on its CPU); auto (gpu where the workers are on GPUs and the cluster has fewer "
               "than 8 CPUs per GPU)")
    compile: bool = _f(False, "torch.compile the training step (DDP included); compiling delays each worker's "
                              "start, and the gain is not measured on current code (jobs/bench.py --compile on)")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = _f(
        "default", "--compile's torch.compile mode; reduce-overhead replays the step as CUDA graphs on a GPU "
                   "(the step never reads back from the device, so it can be captured)")
    name: str = _f("", "run name; rerunning with the same name resumes it (default: a new name)")
    experiment: str = _f("alexnet", "MLflow experiment")
    storage: str = _f("runs", "where Ray Train keeps checkpoints: a directory (NFS) or a URI, s3://bucket/prefix")
    max_failures: int = _f(3, "worker-group restarts before the run fails (-1 = unlimited)")
    cpus_per_worker: float = _f(0.0, "CPUs reserved per training worker (0 = auto)")
    threads_per_worker: int = _f(0, "torch CPU threads per worker (0 = auto)")
    augment_actors: int = _f(0, "augmentation actors (0 = auto)")
    augment_cpus: float = _f(0.0, "CPUs per augmentation actor (0 = auto)")
    log_every: int = _f(10, "print training progress every N steps")

    def __post_init__(self) -> None:
        self.lr_steps = tuple(self.lr_steps)
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            *finite_floats(self),
            (self.workers >= 1, f"--workers must be at least 1, got {self.workers}"),
            (self.batch_size >= 1, f"--batch-size must be positive, got {self.batch_size}"),
            (self.workers < 1 or self.batch_size % self.workers == 0,  # --workers 0 is refused above
             f"--batch-size {self.batch_size} must be divisible by --workers {self.workers}"),
            (self.arch in models.ARCHS, f"--arch {self.arch!r} is not one of {', '.join(models.names())}"),
            (self.input_size >= 0, f"--input-size must be non-negative (0 = the network's own), got {self.input_size}"),
            (not models.input_size_problem(self.arch, self.input_size), models.input_size_problem(self.arch,
                                                                                                  self.input_size)),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (0 < self.lr_factor < 1, f"--lr-factor must be in (0, 1), got {self.lr_factor}"),
            (0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"--weight-decay must be non-negative, got {self.weight_decay}"),
            (0 <= self.dropout < 1, f"--dropout must be in [0, 1), got {self.dropout}"),
            (self.remove_conv in (0, 3, 4), f"--remove-conv must be 0 (none), 3 or 4, got {self.remove_conv}"),
            (self.pca_std >= 0, f"--pca-std must be non-negative (0 = no jitter), got {self.pca_std}"),
            (self.lr_patience >= 1, f"--lr-patience must be at least 1, got {self.lr_patience}"),
            (self.lr_max_drops >= 0, f"--lr-max-drops must be non-negative (0 = no limit), got {self.lr_max_drops}"),
            (self.bias_lr_mult >= 0, f"--bias-lr-mult must be non-negative, got {self.bias_lr_mult}"),
            (self.seed >= 0, f"--seed must be non-negative, got {self.seed}"),
            (self.warmup_epochs >= 0, f"--warmup-epochs must be non-negative, got {self.warmup_epochs}"),
            (self.cpus_per_worker >= 0, f"--cpus-per-worker must be non-negative, got {self.cpus_per_worker}"),
            (self.threads_per_worker >= 0,
             f"--threads-per-worker must be non-negative (0 = auto), got {self.threads_per_worker}"),
            (self.augment_actors >= 0, f"--augment-actors must be non-negative, got {self.augment_actors}"),
            (self.augment_cpus >= 0, f"--augment-cpus must be non-negative (0 = auto), got {self.augment_cpus}"),
            (self.max_failures >= -1,
             f"--max-failures must be -1 (unlimited) or non-negative, got {self.max_failures}"),
            (self.log_every >= 1, f"--log-every must be at least 1, got {self.log_every}"),
            *name_checks("--name", self.name),
        ]
        require(checks)

    @property
    def per_worker_batch(self) -> int:
        return self.batch_size // self.workers


# What `make train` runs: the full AlexNet on the embedded digits, on a 2-core CPU, to
# <= 10% top-1 error within 15 minutes. README.md ("The demo preset") says why each
# value differs from the paper.
PRESETS: dict[str, dict[str, Any]] = {
    "digits": {
        "data": "data/digits",
        "epochs": 8,
        "workers": 1,
        "batch_size": 64,
        "lr": 0.01,
        "bias_init": "caffe",
        "lr_schedule": "step",
        "lr_steps": (6,),
        "experiment": "alexnet-digits",
    },
}


# --arch NAME starts from the recipe of that network's paper (alexnet's is the defaults
# above); --preset and explicit flags override it. docs/architectures.md gives the sources.
ARCH_RECIPES: dict[str, dict[str, Any]] = {name: dict(arch.recipe) for name, arch in models.ARCHS.items()}
TRAIN_DEFAULTS_BY: dict[str, dict[str, dict[str, Any]]] = {"arch": ARCH_RECIPES}


def train_config_for(data: str, preset: str = "", train_args: str = "") -> TrainConfig:
    """The training config that a sweep's trials or an ensemble's members start from:
    a jobs/train.py preset, then jobs/train.py flags, on `data`."""
    from alexnet import cli

    try:
        argv = shlex.split(train_args) + ["--data", data]
    except ValueError as e:  # an unclosed quote
        raise UserError(f"--train-args {train_args!r}: {e}; check its quotes") from e
    if preset:
        if preset not in PRESETS:
            raise UserError(f"--train-preset {preset!r} is not one of {sorted(PRESETS)}")
        argv = ["--preset", preset, *argv]
    return cli.parse(TrainConfig, "--train-args", argv, presets=PRESETS, by_value=TRAIN_DEFAULTS_BY)


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0..6' (inclusive) or '0,3,5' -> seeds; '' -> none."""
    text = text.strip()
    if not text:
        return ()
    try:
        if ".." in text:
            lo, hi = (int(v) for v in text.split(".."))
            return tuple(range(lo, hi + 1))
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise UserError(f"--seeds {text!r}: expected a range like 0..6 or a list like 0,3,5") from e


@dataclass
class SweepConfig:
    data: str = _f("data/digits", "prepared data (jobs/prepare_data.py): a directory or a URI, s3://bucket/prefix")
    train_preset: str = _f("", "start every trial from this jobs/train.py preset (default: the paper's recipe)")
    train_args: str = _f("", "more jobs/train.py flags for every trial, e.g. \"--batch-size 64 --eval-crop ten\"")
    epochs: int = _f(0, "epochs per trial (0 = the training config's)")
    workers_per_trial: int = _f(0, "Ray Train workers per trial (0 = the training config's --workers)")
    num_samples: int = _f(8, "trials to sample from the ranges (with grids: repeats of the whole grid)")
    max_concurrent: int = _f(0, "trials at once (0 = one per --workers-per-trial GPUs; one at a time on CPU)")
    lr_range: tuple[float, ...] = _f((1e-3, 1e-1), "log-uniform search range of the learning rate: MIN,MAX")
    weight_decay_range: tuple[float, ...] = _f((1e-5, 1e-3), "log-uniform search range of weight decay: MIN,MAX")
    lr_grid: tuple[float, ...] = _f((), "search these learning rates (a grid) instead of the range, e.g. 0.01,0.02")
    weight_decay_grid: tuple[float, ...] = _f((), "search these weight decays (a grid) instead of the range")
    seeds: str = _f("", "seed mode: train the fixed training config once per seed, e.g. 0..6 or 0,3,5; "
                        "no early stopping (how ensemble members are trained)")
    scheduler: Literal["asha", "fifo"] = _f("asha", "asha: stop weak trials early on --metric; fifo: never")
    metric: Literal["val_top1_err", "val_loss"] = _f(
        "val_top1_err", "what ASHA compares and the best trial is chosen by: val_top1_err (the paper's) or "
                        "val_loss (finer: top-1 error ties on a small validation set, and ASHA never stops a tie)")
    grace_period: int = _f(1, "ASHA: epochs every trial runs before it may be stopped")
    reduction_factor: float = _f(2.0, "ASHA: keep the best 1/N of the trials at each rung")
    name: str = _f("", "sweep name; rerunning with the same name resumes the sweep (default: a new name)")
    experiment: str = _f("alexnet-tune", "MLflow experiment of the parent run and its trials")
    storage: str = _f("runs", "where Ray Tune and Ray Train keep their state and checkpoints")

    def __post_init__(self) -> None:
        self.lr_range, self.weight_decay_range = tuple(self.lr_range), tuple(self.weight_decay_range)
        self.lr_grid, self.weight_decay_grid = tuple(self.lr_grid), tuple(self.weight_decay_grid)
        seeds = parse_seeds(self.seeds)
        require(finite_floats(self))
        for flag, bounds in (("--lr-range", self.lr_range), ("--weight-decay-range", self.weight_decay_range)):
            if len(bounds) != 2 or not 0 < bounds[0] < bounds[1]:
                raise UserError(f"{flag} {bounds}: expected MIN,MAX with 0 < MIN < MAX")
        checks = [
            (all(v > 0 for v in self.lr_grid), f"--lr-grid {self.lr_grid}: learning rates must be positive"),
            (all(v >= 0 for v in self.weight_decay_grid),
             f"--weight-decay-grid {self.weight_decay_grid}: weight decays must be non-negative"),
            (self.epochs >= 0, f"--epochs must be non-negative, got {self.epochs}"),
            (self.workers_per_trial >= 0, f"--workers-per-trial must be non-negative, got {self.workers_per_trial}"),
            (self.num_samples >= 1, f"--num-samples must be at least 1, got {self.num_samples}"),
            (self.max_concurrent >= 0, f"--max-concurrent must be non-negative, got {self.max_concurrent}"),
            (self.grace_period >= 1, f"--grace-period must be at least 1, got {self.grace_period}"),
            (self.reduction_factor > 1, f"--reduction-factor must be above 1, got {self.reduction_factor}"),
            (not (seeds and (self.lr_grid or self.weight_decay_grid)),
             "--seeds trains one fixed config: set its --lr/--weight-decay in --train-args, not a grid"),
            (len(set(seeds)) == len(seeds), f"--seeds {self.seeds!r} repeats a seed"),
            *name_checks("--name", self.name),
        ]
        require(checks)

    @property
    def seed_list(self) -> tuple[int, ...]:
        return parse_seeds(self.seeds)


# What `make tune` runs: a 2 x 2 grid of short trials on the embedded digits that fits in
# 20 minutes on 2 CPU cores (one trial at a time).
SWEEP_PRESETS: dict[str, dict[str, Any]] = {
    "digits": {
        "data": "data/digits",
        "train_preset": "digits",
        "epochs": 3,
        "num_samples": 1,
        "lr_grid": (0.01, 0.02),
        "weight_decay_grid": (5e-4, 5e-5),
        "grace_period": 1,
        "reduction_factor": 2.0,
        "experiment": "alexnet-digits-tune",
    },
}


@dataclass
class EnsembleConfig:
    data: str = _f("data/digits", "prepared data (a directory or s3:// URI) whose validation split is scored")
    members: int = _f(7, "members to train (--train), or to take from --parent / --tag")
    train: bool = _f(False, "train the members first: jobs/tune.py's seed mode, seeds 0..members-1")
    runs: tuple[str, ...] = _f((), "member MLflow run ids, comma-separated (instead of --train)")
    parent: str = _f("", "MLflow run id of a seed sweep (jobs/tune.py --seeds): its finished trials")
    tag: str = _f("", "KEY=VALUE: the finished runs with this tag in --member-experiment")
    member_experiment: str = _f("", "MLflow experiment searched by --tag")
    train_preset: str = _f("", "--train: the jobs/train.py preset the members start from")
    train_args: str = _f("", "--train: more jobs/train.py flags for every member")
    epochs: int = _f(0, "--train: epochs per member (0 = the training config's)")
    max_concurrent: int = _f(0, "--train: members trained at once (0 = jobs/tune.py's rule: one per --workers GPUs; "
                                "one at a time on CPU)")
    merge: Literal["prob", "logits"] = _f("prob", "average the members' softmax probabilities (the paper), or logits")
    eval_crop: Literal["center", "ten"] = _f("center", "centre 224 crop, or 10 crops averaged")
    batch_size: int = _f(128, "images per inference batch")
    device: Literal["auto", "cpu", "cuda"] = _f("auto", "auto: GPUs when the cluster has them")
    name: str = _f("", "ensemble name; rerunning with the same name resumes training the members")
    experiment: str = _f("alexnet-ensemble", "MLflow experiment of the ensemble run (and of trained members)")
    storage: str = _f("runs", "where Ray Tune and Ray Train keep the members' state and checkpoints")

    def __post_init__(self) -> None:
        self.runs = tuple(r.strip() for r in self.runs if r.strip())
        sources = [name for name, given in (("--train", self.train), ("--runs", bool(self.runs)),
                                            ("--parent", bool(self.parent)), ("--tag", bool(self.tag))) if given]
        checks = [
            (len(sources) == 1, "choose where the members come from: exactly one of --train, --runs, --parent, "
                                f"--tag (got {', '.join(sources) or 'none'})"),
            (self.members >= 1, f"--members must be at least 1, got {self.members}"),
            (not self.tag or ("=" in self.tag and bool(self.member_experiment)),
             f"--tag {self.tag!r}: expected KEY=VALUE, with --member-experiment naming where to search"),
            (self.epochs >= 0, f"--epochs must be non-negative, got {self.epochs}"),
            (self.max_concurrent >= 0, f"--max-concurrent must be non-negative, got {self.max_concurrent}"),
            (self.batch_size >= 1, f"--batch-size must be positive, got {self.batch_size}"),
            ("`" not in self.tag.partition("=")[0], f"--tag {self.tag!r}: a tag key cannot contain `"),
            (not ("'" in self.tag.partition("=")[2] and '"' in self.tag.partition("=")[2]),
             f"--tag {self.tag!r}: use either ' or \" in it, not both (MLflow's search filters cannot match it)"),
            *name_checks("--name", self.name),
        ]
        require(checks)


# What `make ensemble` runs: seven short members on the embedded digits, trained and
# assembled within 30 minutes on 2 CPU cores.
ENSEMBLE_PRESETS: dict[str, dict[str, Any]] = {
    "digits": {
        "data": "data/digits",
        "members": 7,
        "train": True,
        "train_preset": "digits",
        "epochs": 2,
        "experiment": "alexnet-digits-ensemble",
    },
}


@dataclass
class PredictConfig:
    run: str = _f("", "MLflow run id of a training run or of an ensemble run (jobs/ensemble.py)")
    images: str = _f("", "a folder of images to classify (searched recursively)")
    data: str = _f("", "or: prepared data (a directory or s3:// URI) whose --split is scored with Ray Data")
    split: str = _f("val", "--data: the split to score")
    eval_crop: Literal["center", "ten"] = _f("center", "centre 224 crop, or 10 crops averaged")
    out: str = _f("predictions.csv", "CSV to write: top-5 classes and probabilities per image")
    batch_size: int = _f(64, "images per batch")
    device: Literal["auto", "cpu", "cuda"] = _f("auto", "--data: auto uses GPUs when the cluster has them")

    def __post_init__(self) -> None:
        checks = [
            (bool(self.run), "--run is required: the MLflow run id of a training or ensemble run"),
            (bool(self.images) != bool(self.data), "pass exactly one of --images DIR or --data DIR"),
            (self.batch_size >= 1, f"--batch-size must be positive, got {self.batch_size}"),
            (bool(self.out), "--out must name a CSV file to write"),
        ]
        require(checks)


@dataclass
class FiguresConfig:
    run: str = _f("", "MLflow run id of a training run or of an ensemble run (jobs/ensemble.py)")
    data: str = _f("data/digits", "prepared data the run was trained on (a directory or s3:// URI)")
    images: int = _f(8, "validation images in the top-5 figure")
    queries: int = _f(5, "validation images in the retrieval figure")
    neighbours: int = _f(6, "nearest training images shown for each of them")
    seed: int = _f(0, "which validation images are drawn")
    features: str = _f("", "folder of the training set's last-hidden-layer features: reused when they were "
                           "computed for this run and --data, else computed and kept there (default: "
                           "<out>/train-features)")
    out: str = _f("", "folder for the figures (default: outputs/figures-<run>)")
    batch_size: int = _f(64, "images per batch")
    device: Literal["auto", "cpu", "cuda"] = _f("auto", "auto: GPUs when the cluster has them")

    def __post_init__(self) -> None:
        require([
            (bool(self.run), "--run is required: the MLflow run id of a training or ensemble run"),
            (self.images >= 1, f"--images must be at least 1, got {self.images}"),
            (self.queries >= 1, f"--queries must be at least 1, got {self.queries}"),
            (self.neighbours >= 1, f"--neighbours must be at least 1, got {self.neighbours}"),
            (self.batch_size >= 1, f"--batch-size must be positive, got {self.batch_size}"),
        ])
