"""`--decode gpu`: the actors send JPEGs and their random choices, and the training
worker decodes and crops them on its device (here the CPU, through the same code a GPU
runs): the same rows, windows, flips and offsets as the actors' own crops."""

from pathlib import Path

import numpy as np
import pytest
import torch
from test_shards import write_shards

from alexnet.data.augment import CROP
from alexnet.data.device import decode_batch
from alexnet.data.images import SHARD_SIZE
from alexnet.data.manifest import IMAGENET_EIGVAL, IMAGENET_EIGVEC
from alexnet.data.shards import ShardsAugment


def blocks(paths: list[str], decode: bool, epoch: int = 2) -> list[dict]:
    aug = ShardsAugment(IMAGENET_EIGVAL, IMAGENET_EIGVEC, seed=5, out_rows=4, decode=decode)
    return list(aug.augment_shards(paths, epoch))


def test_decoding_on_the_device_cuts_the_actors_windows(tmp_path: Path) -> None:
    """The shards' images are gradients whose red level is the row and green level the
    column, so a crop's mean red and green give its window's position."""
    paths = write_shards(tmp_path, shards=2, rows=7)
    on_cpu, undecoded = blocks(paths, decode=True), blocks(paths, decode=False)
    assert [len(b["label"]) for b in on_cpu] == [len(b["label"]) for b in undecoded]
    for cpu, raw in zip(on_cpu, undecoded, strict=True):
        assert set(raw) == {"jpeg", "origin", "label", "offset", "flip"}  # nothing decoded in the actor
        dev = decode_batch(raw, "cpu")
        assert dev["image"].shape == (len(cpu["label"]), CROP, CROP, 3) and dev["image"].dtype == torch.uint8
        assert np.array_equal(dev["label"].numpy(), cpu["label"]) and np.array_equal(dev["flip"].numpy(), cpu["flip"])
        assert np.array_equal(dev["offset"].numpy(), cpu["offset"]) and dev["valid"].all() and cpu["valid"].all()
        starts = (raw["origin"] * (SHARD_SIZE - CROP + 1)).astype(int)  # augment.crop_at's rule
        for image in (dev["image"].numpy(), cpu["image"]):
            means = image[..., :2].reshape(len(image), -1, 2).mean(1)
            assert np.abs(means - (starts + (CROP - 1) / 2)).max() < 1.5  # the window, to within JPEG's rounding
        assert np.abs(dev["image"].numpy().astype(int) - cpu["image"]).mean() < 2.0  # two decoders (one fast DCT)


def test_a_jpeg_that_does_not_decode_is_zeros_and_invalid_and_the_rest_decode(tmp_path: Path) -> None:
    raw = blocks(write_shards(tmp_path, shards=1, rows=4), decode=False)[0]
    raw["jpeg"][1] = raw["jpeg"][1][: len(raw["jpeg"][1]) // 3]  # truncated
    raw["jpeg"][2] = b""
    dev = decode_batch(raw, "cpu")
    assert dev["valid"].tolist() == [True, False, False, True]
    assert not dev["image"][1:3].any() and dev["image"][[0, 3]].float().mean() > 50


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU path: needs a GPU")
def test_nvjpeg_decodes_what_the_cpu_decodes(tmp_path: Path) -> None:
    raw = blocks(write_shards(tmp_path, shards=1, rows=4), decode=False)[0]
    cpu, gpu = decode_batch(raw, "cpu"), decode_batch(raw, "cuda")
    assert gpu["image"].is_cuda and gpu["valid"].all()
    assert (gpu["image"].cpu().int() - cpu["image"].int()).abs().float().mean() < 1.0
