"""checkpoint.pt: written and read here only, as tensors and plain Python values.

A checkpoint comes from MLflow artifacts or from --storage, which may be a shared bucket:
anyone who can log a run can put a file there. Unpickling runs whatever code the file
names, so every read uses ``torch.load(weights_only=True)``, which refuses everything but
tensors and plain containers, and every write checks that it stays readable that way.
"""

from __future__ import annotations

import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alexnet.errors import UserError

CHECKPOINT_FILE = "checkpoint.pt"
REQUIRED = ("model", "model_args")  # what every reader needs: the weights and how to rebuild the network
_SCALARS = (bool, int, float, str, bytes, type(None))
_OLD_CLASSIFIER_KEY = re.compile(r"^classifier\.\d+\.")


def plain(value: Any, where: str = "checkpoint") -> Any:
    """`value` with numpy scalars made Python numbers; a TypeError naming the entry for
    anything that `torch.load(weights_only=True)` would refuse, so it is never written."""
    if type(value) in _SCALARS or isinstance(value, torch.Tensor):  # exactly: an enum or a str subclass is refused
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        bad = [k for k in value if type(k) not in _SCALARS]
        if bad:
            raise TypeError(f"{where}: key {bad[0]!r} is a {type(bad[0]).__name__}, not a plain value")
        items = {k: plain(v, f"{where}[{k!r}]") for k, v in value.items()}
        if type(value) in (dict, OrderedDict) and all(items[k] is v for k, v in value.items()):
            return value  # unchanged: a state_dict keeps its OrderedDict and _metadata
        return items
    if type(value) in (list, tuple):
        return type(value)(plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(f"{where} is a {type(value).__name__}: a checkpoint holds tensors and plain values only")


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write then rename, so a crash mid-write never leaves a torn checkpoint."""
    path = str(path)
    torch.save(plain(state), path + ".tmp")
    os.replace(path + ".tmp", path)


def load(path: str | Path, label: str) -> dict[str, Any]:
    """The checkpoint at `path`, or a one-line UserError that names `label` (the run or
    the file) when it holds anything but tensors and plain values or is no checkpoint."""
    name = Path(path).name
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        named = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({named.group(1)})" if named else ""
        raise UserError(f"{label}: {name} holds objects that are not tensors or plain values{what}, so it "
                        "will not be unpickled (that could run any code; jobs/train.py never writes such a "
                        "file): do not use it, or retrain") from e
    except Exception as e:  # a torn or foreign file fails in many ways inside torch.load
        reason = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        raise UserError(f"{label}: {name} is not a readable checkpoint ({reason}); retrain the run or "
                        "leave it out") from e
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED):
        raise UserError(f"{label}: {name} lacks {' and '.join(REQUIRED)}, so jobs/train.py did not write it: "
                        "do not use it, or retrain")
    return state


def check_weights(model: nn.Module, weights: Mapping[str, Any], label: str) -> None:
    """A one-line UserError that names `label` and says why `weights` do not fit `model`
    (a checkpoint of an older network layout is the usual reason). `model` may live on
    the meta device: only its parameter names and shapes are read."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    misshapen = [k for k in expected if k in weights and (not isinstance(weights[k], torch.Tensor)
                                                          or weights[k].shape != expected[k].shape)]
    if not (missing or unexpected or misshapen):
        return
    detail = "; ".join(f"{what} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                       for what, keys in (("missing", missing), ("unexpected", unexpected),
                                          ("other shape", misshapen)) if keys)
    if any(_OLD_CLASSIFIER_KEY.match(k) for k in unexpected):
        why = "trained with an older network layout (classifier indices changed in this version); retrain it"
    else:
        why = "they do not fit the network its model_args describe; retrain it"
    network = type(getattr(model, "net", model)).__name__  # the network inside a models.ResizeInput
    raise UserError(f"{label}: its weights do not match this version's {network} ({detail}): {why}")


def load_weights(model: nn.Module, weights: Mapping[str, Any], label: str) -> nn.Module:
    """`model` with `weights` loaded, or check_weights' UserError instead of a state_dict traceback."""
    check_weights(model, weights, label)
    model.load_state_dict(weights)
    return model
