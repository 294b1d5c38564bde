import numpy as np
import torch

from alexnet.data.augment import CROP, PCAJitter, TrainAugment, eval_batch, random_crop
from alexnet.data.device import to_input
from alexnet.data.images import encode_jpeg
from alexnet.data.manifest import IMAGENET_EIGVAL, IMAGENET_EIGVEC


def coordinate_image() -> np.ndarray:
    """Each pixel encodes its own (row, col), so a crop reveals where it came from."""
    y, x = np.mgrid[0:256, 0:256]
    return np.stack([y, x, np.zeros_like(y)], -1).astype(np.uint8)


def test_random_crop_is_a_window_inside_the_image_at_every_position() -> None:
    img, rng = coordinate_image(), np.random.default_rng(0)
    origins = set()
    for _ in range(2000):
        crop = random_crop(img, rng)
        assert crop.shape == (CROP, CROP, 3)
        rows, cols = crop[:, :, 0].astype(int), crop[:, :, 1].astype(int)
        assert (np.diff(rows, axis=0) == 1).all() and (np.diff(cols, axis=1) == 1).all()  # never resampled
        top, left = rows[0, 0], cols[0, 0]
        assert 0 <= top <= 256 - CROP and 0 <= left <= 256 - CROP
        origins.add((top, left))
    assert len(origins) > 800  # of the 33 x 33 possible windows


def test_flip_bit_is_fair_and_the_device_mirrors_exactly_those_images() -> None:
    aug = TrainAugment(IMAGENET_EIGVAL, IMAGENET_EIGVEC, seed=0)
    batch = {"image": np.array([encode_jpeg(coordinate_image())] * 200, dtype=object), "label": np.zeros(200)}
    out = aug.augment(batch)
    assert 70 < out["flip"].sum() < 130
    images, flip = torch.from_numpy(out["image"]), torch.from_numpy(out["flip"])
    x = to_input(images, torch.zeros(3), None, flip)
    plain = to_input(images, torch.zeros(3))
    assert torch.equal(x[flip], plain[flip].flip(3)) and torch.equal(x[~flip], plain[~flip])


def test_pca_jitter_has_the_papers_distribution() -> None:
    eigval, eigvec = np.array(IMAGENET_EIGVAL), np.array(IMAGENET_EIGVEC)
    offsets = PCAJitter(eigval, eigvec).offsets(np.random.default_rng(0), 200_000).astype(np.float64)
    # offset = eigvec @ (alpha * eigval), alpha ~ N(0, 0.1): covariance eigvec diag((0.1 l)^2) eigvec^T
    expected = 255.0**2 * eigvec @ np.diag((0.1 * eigval) ** 2) @ eigvec.T
    assert np.abs(offsets.mean(0)).max() < 0.05
    assert np.allclose(np.cov(offsets.T), expected, rtol=0.03, atol=1e-3)
    # in the eigenbasis each coordinate is an independent alpha_i * lambda_i
    coords = offsets @ eigvec / 255.0
    assert np.allclose(coords.std(0), 0.1 * eigval, rtol=0.02)


def test_train_augment_batch_is_uint8_and_counts_undecodable_rows() -> None:
    good = encode_jpeg(coordinate_image())
    aug = TrainAugment(IMAGENET_EIGVAL, IMAGENET_EIGVEC, seed=0)
    out = aug.augment({"image": np.array([good, b"not a jpeg", good[: len(good) // 3]], dtype=object),
                       "label": np.array([3, 4, 5])})
    assert out["image"].dtype == np.uint8 and out["image"].shape == (3, CROP, CROP, 3)
    assert out["offset"].shape == (3, 3)
    assert out["valid"].tolist() == [True, False, False]
    assert not out["image"][1].any()


def test_an_actor_call_yields_every_row_in_blocks_of_at_most_out_rows() -> None:
    aug = TrainAugment(IMAGENET_EIGVAL, IMAGENET_EIGVEC, seed=0, out_rows=4)
    batch = {"image": np.array([encode_jpeg(coordinate_image())] * 10, dtype=object), "label": np.arange(10)}
    blocks = list(aug(batch))
    assert [len(b["image"]) for b in blocks] == [4, 4, 2]
    assert np.concatenate([b["label"] for b in blocks]).tolist() == list(range(10))
    assert all(b["image"].shape[1:] == (CROP, CROP, 3) and b["valid"].all() for b in blocks)


def test_augmentation_differs_per_presentation() -> None:
    batch = {"image": np.array([encode_jpeg(coordinate_image())] * 8, dtype=object), "label": np.zeros(8)}
    aug = TrainAugment(IMAGENET_EIGVAL, IMAGENET_EIGVEC, seed=1)
    a, b = aug.augment(batch), aug.augment(batch)
    assert not np.array_equal(a["offset"], b["offset"])
    assert not np.array_equal(a["image"], b["image"])


def test_eval_center_crop_and_ten_crop_input() -> None:
    batch = {"image": np.array([encode_jpeg(coordinate_image())], dtype=object),
             "label": np.array([0]), "index": np.array([0])}
    center = eval_batch(batch, "center")["image"][0]
    assert center.shape == (CROP, CROP, 3)
    assert abs(int(center[0, 0, 0]) - 16) <= 2 and abs(int(center[0, 0, 1]) - 16) <= 2  # JPEG rounding
    assert eval_batch(batch, "ten")["image"].shape == (1, 256, 256, 3)


def test_without_crop_flip_every_crop_is_the_centre_one_and_the_colour_offsets_stay() -> None:
    batch = {"image": np.array([encode_jpeg(coordinate_image())] * 50, dtype=object), "label": np.zeros(50)}
    plain = TrainAugment(IMAGENET_EIGVAL, IMAGENET_EIGVEC, seed=3).augment(batch)
    fixed = TrainAugment(IMAGENET_EIGVAL, IMAGENET_EIGVEC, seed=3, crop_flip=False).augment(batch)
    assert not fixed["flip"].any() and plain["flip"].any()
    tops, lefts = fixed["image"][:, 0, 0, 0].astype(int), fixed["image"][:, 0, 0, 1].astype(int)
    assert (np.abs(tops - 16) <= 2).all() and (np.abs(lefts - 16) <= 2).all()  # (256 - 224) / 2, JPEG's rounding
    assert len({(int(a), int(b)) for a, b in zip(plain["image"][:, 0, 0, 0], plain["image"][:, 0, 0, 1],
                                                  strict=True)}) > 20
    assert np.array_equal(fixed["offset"], plain["offset"])  # only the crop and the flip are switched off


def test_pca_std_zero_switches_the_colour_jitter_off() -> None:
    batch = {"image": np.array([encode_jpeg(coordinate_image())] * 20, dtype=object), "label": np.zeros(20)}
    assert not TrainAugment(IMAGENET_EIGVAL, IMAGENET_EIGVEC, seed=0, pca_std=0.0).augment(batch)["offset"].any()
    assert TrainAugment(IMAGENET_EIGVAL, IMAGENET_EIGVEC, seed=0).augment(batch)["offset"].any()
