"""The networks the project trains, by name (torchvision's `models/` pattern): one
builder per network, a registry that maps names to builders, and `build` / `from_model_args`
to get one. Importing this package registers every network."""

# ruff: noqa: I001 - the builder modules are imported in the papers' order, which is `names()`'s.

from alexnet.models.registry import (
    ARCHS,
    MIN_INPUT,
    PIPELINE_CROP,
    Arch,
    ResizeInput,
    build,
    from_model_args,
    get,
    input_size_problem,
    names,
    register,
)

# Each module registers its builders when imported; the order is the order of `names()`.
from alexnet.models import lenet, alexnet, zfnet, vgg, googlenet, resnet  # noqa: E402, F401

__all__ = ["ARCHS", "MIN_INPUT", "PIPELINE_CROP", "Arch", "ResizeInput", "build", "from_model_args", "get",
           "input_size_problem", "names", "register"]
