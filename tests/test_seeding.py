"""Each rank and epoch draws its own dropout masks, and an epoch run again draws the same."""

import json
from pathlib import Path

import ray.train
import torch
import torch.distributed as dist
from ray.train.torch import TorchTrainer

from alexnet.seeding import seed_training_step


def dropout_mask(seed: int, rank: int, epoch: int) -> torch.Tensor:
    seed_training_step(seed, rank, epoch)
    return torch.nn.functional.dropout(torch.ones(4096), 0.5) == 0


def test_masks_differ_by_rank_and_epoch_and_repeat_for_the_same_ones() -> None:
    base = dropout_mask(0, rank=0, epoch=0)
    assert torch.equal(base, dropout_mask(0, rank=0, epoch=0))
    for other in (dropout_mask(0, 1, 0), dropout_mask(0, 0, 1), dropout_mask(1, 0, 0)):
        assert (base != other).float().mean() > 0.3  # independent masks disagree on about half


def test_two_ranks_of_a_real_two_worker_run_draw_different_masks(ray_session, tmp_path: Path) -> None:
    def masks_per_rank(config: dict) -> None:  # defined here so that Ray ships it by value
        """What train_func_per_worker does at the start of an epoch, then one dropout draw."""
        rank = ray.train.get_context().get_world_rank()
        seed_training_step(0, rank, config["epoch"])
        mask = torch.nn.functional.dropout(torch.ones(4096), 0.5) == 0
        masks = [None, None]
        dist.all_gather_object(masks, mask.tolist())
        if rank == 0:
            Path(config["out"]).write_text(json.dumps(masks))

    out = tmp_path / "masks.json"
    TorchTrainer(masks_per_rank, train_loop_config={"epoch": 3, "out": str(out)},
                 scaling_config=ray.train.ScalingConfig(
                     num_workers=2, use_gpu=False, resources_per_worker={"CPU": 0.5})).fit()
    rank0, rank1 = (torch.tensor(m) for m in json.loads(out.read_text()))
    assert (rank0 != rank1).float().mean() > 0.3
    assert torch.equal(rank0, dropout_mask(0, rank=0, epoch=3))  # the driver's draw for rank 0 agrees
