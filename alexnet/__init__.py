"""AlexNet (Krizhevsky et al., 2012) trained on Ray: model, data pipeline, training."""

from alexnet.model import AlexNet

__all__ = ["AlexNet"]
