"""The training loop without Ray, on real digits scans from the prepared shards, and
ten-crop scoring and top-k counting against a hand computation on a model whose logits
are a known function of the pixels (ten classes, so that top-5 can be wrong). On the
CPU; the ten-crop tests also on a GPU as the workers run it, skipped where there is none."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from alexnet.data import manifest as mf
from alexnet.data.augment import TrainAugment, eval_batch
from alexnet.data.device import ten_crops, to_input
from alexnet.engine import Diverged, evaluate, predict, step_loss, train_one_epoch
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
    top1, top5, n, bad, loss = counts.tolist()
    assert n == 15 and bad == 3
    assert 0 < loss < float("inf")  # summed over the 12 decoded images only: an undecodable one has no scores
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


CLASSES = 10  # more than five, so that top-5 can be wrong
SCALE = 0.05  # keeps the logits within a few units, so the ten crops' softmaxes really mix
# the ten 224 windows of a 256 image, written out: (top, left) of the four corners and the centre
WINDOWS = [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]


class TopRowLogits(nn.Module):
    """Class j's logit is SCALE times channel 0 of the crop's top row at column j: a known
    function of which pixels a crop holds and of whether it is mirrored."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SCALE * x[:, 0, 0, :CLASSES]


def hand_ten_crop(images: np.ndarray, mean: np.ndarray, logits: bool = False) -> np.ndarray:
    """TopRowLogits' ten-crop score, computed from pixel coordinates alone: each window's
    top row as is, and mirrored (its last columns first), softmax (or not), averaged."""
    out = np.zeros((len(images), CLASSES))
    for i, img in enumerate(images.astype(np.float64)):
        for top, left in WINDOWS:
            row = img[top, left:left + 224, 0] - mean[0]
            for seen in (row, row[::-1]):
                z = SCALE * seen[:CLASSES]
                out[i] += (z if logits else np.exp(z - z.max()) / np.exp(z - z.max()).sum()) / 10
    return out


def random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)


# Each device as the workers run it: on CUDA with bf16 autocast and channels_last (the
# model's multiply stays float32 under autocast, so the hand computation still holds).
DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                     reason="GPU path: needs a GPU"))]


@pytest.mark.parametrize("device", DEVICES)
def test_ten_crop_prediction_is_the_average_of_the_ten_crops_softmaxes(device: str) -> None:
    images, mean = random_images(3), np.array([120.0, 110.0, 100.0])
    dev, on_gpu = torch.device(device), device == "cuda"
    batch, mean_t = {"image": torch.from_numpy(images)}, torch.tensor(mean, dtype=torch.float32, device=device)
    probs = predict(TopRowLogits(), batch, dev, mean_t, amp=on_gpu, channels_last=on_gpu).cpu()
    assert probs.shape == (3, CLASSES)
    assert np.allclose(probs.numpy(), hand_ten_crop(images, mean), rtol=0, atol=1e-6)
    logits = predict(TopRowLogits(), batch, dev, mean_t, amp=on_gpu, channels_last=on_gpu, logits=True).cpu()
    assert np.allclose(logits.numpy(), hand_ten_crop(images, mean, logits=True), rtol=0, atol=1e-4)
    # a 224 image is one crop, scored as it is
    single = predict(TopRowLogits(), {"image": torch.from_numpy(images[:, :224, :224].copy())}, dev, mean_t,
                     amp=on_gpu, channels_last=on_gpu).cpu()
    z = SCALE * (images[:, 0, :CLASSES, 0].astype(np.float64) - mean[0])
    assert np.allclose(single.numpy(), np.exp(z) / np.exp(z).sum(1, keepdims=True), rtol=0, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_ten_crop_evaluation_counts_top1_and_top5_hits_and_misses(device: str) -> None:
    """Four images, labels picked from the hand-computed ranking: the best class (a top-1
    and top-5 hit), the fifth (top-5 only), the sixth (neither), and the best class of an
    image that failed to decode (an error whatever its scores)."""
    images, mean = random_images(4, seed=1), np.array([120.0, 110.0, 100.0])
    probs = hand_ten_crop(images, mean)
    assert (np.diff(-np.sort(-probs, axis=1), axis=1) < -1e-3).all()  # no near-ties: every rank is clear-cut
    order = np.argsort(-probs, axis=1)
    ranks = [0, 4, 5, 0]
    labels = torch.tensor([int(order[i, r]) for i, r in enumerate(ranks)])
    batch = {"image": torch.from_numpy(images), "label": labels, "valid": torch.tensor([True, True, True, False])}
    on_gpu = device == "cuda"
    counts = evaluate(TopRowLogits(), [batch], torch.device(device),
                      torch.tensor(mean, dtype=torch.float32, device=device), amp=on_gpu, channels_last=on_gpu)
    assert counts[:4].tolist() == [1.0, 2.0, 4.0, 1.0]  # top-1 correct, top-5 correct, images, undecodable
    # the loss sum: the decoded images' cross-entropy of the averaged ten-crop probabilities
    hand_loss = -np.log(probs[np.arange(3), labels[:3].numpy()]).sum()
    assert counts[4].item() == pytest.approx(hand_loss, rel=1e-3 if on_gpu else 1e-5)


class Tiny(nn.Module):
    """A network with no dropout: its loss on a batch is the same before and after a step
    with lr 0, so the epoch's sums can be recomputed by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 16, stride=16)
        self.fc = nn.Linear(4 * 14 * 14, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).relu().flatten(1))


def synthetic_batches(n: int, rows: int = 6) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.randint(0, 256, (rows, 224, 224, 3), dtype=torch.uint8, generator=g),
             "offset": torch.randn(rows, 3, generator=g), "flip": torch.rand(rows, generator=g) < 0.5,
             "label": torch.randint(0, 10, (rows,), generator=g), "valid": torch.arange(rows) != i % rows}
            for i in range(n)]


def test_the_training_step_never_waits_for_the_host() -> None:
    """Input normalisation, flip, forward and loss trace as one graph: any read-back
    (`.item()`, `bool(t)`, a boolean-mask index) would break it, and fullgraph refuses."""
    model, mean = Tiny(), torch.tensor([120.0, 110.0, 100.0])

    def step(image, offset, flip, label, valid):
        return step_loss(model, to_input(image, mean, offset, flip), label, valid, torch.device("cpu"), False)

    b = synthetic_batches(1)[0]
    traced = torch.compile(step, fullgraph=True, backend="eager")(b["image"], b["offset"], b["flip"], b["label"],
                                                                   b["valid"])
    eager = step(b["image"], b["offset"], b["flip"], b["label"], b["valid"])
    assert all(torch.allclose(a.float(), e.float()) for a, e in zip(traced, eager, strict=True))


def test_epoch_statistics_read_once_per_interval_are_exact() -> None:
    torch.manual_seed(0)
    model, mean, batches = Tiny(), torch.tensor([120.0, 110.0, 100.0]), synthetic_batches(5)
    with torch.no_grad():
        logits = [model(to_input(b["image"], mean, b["offset"], b["flip"])) for b in batches]
        expected = sum(float((nn.functional.cross_entropy(z, b["label"], reduction="none") * b["valid"]).sum())
                       for z, b in zip(logits, batches, strict=True))
        right = sum(int(((z.argmax(1) == b["label"]) & b["valid"]).sum()) for z, b in zip(logits, batches, strict=True))
    seen: list[tuple[int, int, int]] = []
    stats = train_one_epoch(model, torch.optim.SGD(model.parameters(), lr=0.0), batches, torch.device("cpu"), mean,
                            read_every=2, on_step=lambda step, s: seen.append((step, s.images, s.bad_images)))
    assert seen == [(1, 10, 2), (3, 20, 4)]  # every second step, with the counts so far
    assert (stats.images, stats.bad_images) == (25, 5)
    assert stats.loss_sum == pytest.approx(expected, rel=1e-5)
    assert stats.correct == right and 0 < right < 25  # the training error counts valid rows only
