"""Independent random streams from one run seed.

Every source of randomness in a run draws from its own stream, derived from the run's
`--seed` and what distinguishes it: the training rank and the epoch for dropout, the
epoch and the first image of a row group for the crops, flips and PCA offsets, the epoch
and the first image of an actor call for the order in which the call's rows leave it. So
no two ranks share dropout masks, no two epochs share crops, and an epoch that is run
again (after a resume or a restart) draws, for each image, what it drew the first time.
(Which shards an actor call gets, and so which image lands in which batch and meets which
dropout mask, follows Ray Data's unseeded shard order.)
"""

from __future__ import annotations

import numpy as np

DROPOUT, AUGMENT, SHUFFLE = 1, 2, 3  # stream kinds: one seed never serves two purposes


def stream_seed(seed: int, kind: int, *keys: int) -> int:
    """A 64-bit seed for the stream (`kind`, `keys`) of run seed `seed`."""
    if seed < 0 or any(k < 0 for k in keys):
        raise ValueError(f"seeds and stream keys must be non-negative, got {seed}, {keys}")
    state = np.random.SeedSequence([seed, kind, *keys]).generate_state(2, np.uint32)
    return int(state[0]) << 32 | int(state[1])


def seed_training_step(seed: int, rank: int, epoch: int) -> None:
    """Seed torch (CPU and every GPU) for one rank's epoch: its dropout masks. (torch is
    imported here, not above: the augmentation actors use this module and no torch.)"""
    import torch

    torch.manual_seed(stream_seed(seed, DROPOUT, rank, epoch))


def augment_rng(seed: int, epoch: int, first_index: int) -> np.random.Generator:
    """The stream of crops, flips and PCA offsets for the images of one row group."""
    return np.random.default_rng(stream_seed(seed, AUGMENT, epoch, first_index))


def shuffle_rng(seed: int, epoch: int, first_index: int) -> np.random.Generator:
    """The stream that orders the rows of one actor call (`alexnet.data.shards`), keyed by
    the call's first image: its own, so that shuffling never moves a crop."""
    return np.random.default_rng(stream_seed(seed, SHUFFLE, epoch, first_index))
