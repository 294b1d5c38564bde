"""AlexNet (Krizhevsky et al., 2012) trained on Ray: model, data pipeline, training.

`AlexNet` is looked up on first use: importing `alexnet.data` in an augmentation actor,
an evaluation task or the preparation job must not import torch (about 2 s per process
on 2 vCPUs), and every Ray worker that touches the package imports this file."""

from typing import Any

__all__ = ["AlexNet"]


def __getattr__(name: str) -> Any:
    if name == "AlexNet":
        from alexnet.model import AlexNet

        return AlexNet
    raise AttributeError(f"module 'alexnet' has no attribute {name!r}")
