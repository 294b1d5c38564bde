"""The training loop without Ray, on real digits scans from the prepared shards."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from alexnet.data import manifest as mf
from alexnet.data.augment import TrainAugment, eval_batch
from alexnet.data.device import ten_crops, to_input
from alexnet.engine import Diverged, evaluate, train_one_epoch
from alexnet.model import AlexNet


def load_batches(data: Path, split: str, n: int, corrupt: int = 0) -> list[dict[str, torch.Tensor]]:
    manifest, _ = mf.load(data)
    rows = pq.read_table(manifest.shard_paths(data, split)).to_pydict()
    images = np.array(rows["image"][:n], dtype=object)
    images[:corrupt] = b"\xff\xd8 broken"
    batch = {"image": images, "label": np.array(rows["label"][:n]), "index": np.array(rows["index"][:n])}
    out = (TrainAugment(manifest.pca_eigval, manifest.pca_eigvec, seed=0).augment(batch) if split == "train"
           else eval_batch(batch))
    return [{k: torch.from_numpy(v) for k, v in out.items()}]


def test_one_epoch_learns_and_skips_undecodable_rows(tiny_data: Path) -> None:
    torch.manual_seed(0)
    manifest, _ = mf.load(tiny_data)
    model = AlexNet(3, bias_init="caffe")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = load_batches(tiny_data, "train", 16, corrupt=2)
    mean = torch.tensor(manifest.rgb_mean)
    first = train_one_epoch(model, opt, batches, torch.device("cpu"), mean)
    assert first.images == 14 and first.bad_images == 2
    for _ in range(4):
        last = train_one_epoch(model, opt, batches, torch.device("cpu"), mean)
    assert last.loss_sum / last.images < first.loss_sum / first.images


def test_a_diverging_run_stops_with_a_clear_error(tiny_data: Path) -> None:
    torch.manual_seed(0)
    manifest, _ = mf.load(tiny_data)
    model = AlexNet(3, bias_init="caffe")
    opt = torch.optim.SGD(model.parameters(), lr=1e4, momentum=0.9)
    batches = load_batches(tiny_data, "train", 16) * 20
    with pytest.raises(Diverged, match="lower --lr"):
        train_one_epoch(model, opt, batches, torch.device("cpu"), torch.tensor(manifest.rgb_mean))


def test_evaluate_counts_every_image_and_undecodable_ones_as_errors(tiny_data: Path) -> None:
    manifest, _ = mf.load(tiny_data)
    batches = load_batches(tiny_data, "val", 15, corrupt=3)
    counts = evaluate(AlexNet(3), batches, torch.device("cpu"), torch.tensor(manifest.rgb_mean))
    top1, top5, n, bad = counts.tolist()
    assert n == 15 and bad == 3
    assert top5 == 12  # 3 classes: every decodable image is within the top 5
    assert 0 <= top1 <= 12


def test_device_normalisation_is_channels_last_and_applies_the_offset() -> None:
    images = torch.full((2, 4, 4, 3), 100, dtype=torch.uint8)
    x = to_input(images, torch.tensor([10.0, 20.0, 30.0]), torch.tensor([[1.0, 2.0, 3.0], [0, 0, 0]]))
    assert x.shape == (2, 3, 4, 4) and x.is_contiguous(memory_format=torch.channels_last)
    assert x[0, :, 0, 0].tolist() == [91.0, 82.0, 73.0] and x[1, :, 0, 0].tolist() == [90.0, 80.0, 70.0]


def test_ten_crops_are_corners_centre_and_mirrors() -> None:
    x = torch.arange(256.0).view(1, 1, 1, 256).expand(1, 1, 256, 256)
    crops = ten_crops(x)
    assert crops.shape == (10, 1, 224, 224)
    assert [float(c[0, 0, 0]) for c in crops[:5]] == [0, 32, 0, 32, 16]
    assert torch.equal(crops[5:], crops[:5].flip(3))


def test_ten_crop_evaluation_scores_each_image_once(tiny_data: Path) -> None:
    manifest, _ = mf.load(tiny_data)
    rows = pq.read_table(manifest.shard_paths(tiny_data, "val")).to_pydict()
    batch = eval_batch({"image": np.array(rows["image"][:4], dtype=object), "label": np.array(rows["label"][:4]),
                        "index": np.array(rows["index"][:4])}, crop="ten")
    counts = evaluate(AlexNet(3), [{k: torch.from_numpy(v) for k, v in batch.items()}], torch.device("cpu"),
                      torch.tensor(manifest.rgb_mean))
    assert counts[2] == 4 and counts[1] == 4
