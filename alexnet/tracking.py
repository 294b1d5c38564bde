"""MLflow: where runs go, and the few calls the jobs make.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else a SQLite store inside the
project (``mlruns.db``, artifacts under ``mlruns/``). The project directory is found
from the editable install, so a job submitted with ``ray job submit --working-dir .``
(which runs in a temporary copy) still writes to the same store as a local run.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from alexnet.errors import UserError

RUN_NAME_TAG = "alexnet.run_name"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests a child run under its parent


def project_root() -> Path:
    try:
        info = json.loads(metadata.distribution("alexnet-ray").read_text("direct_url.json") or "{}")
        if info.get("dir_info", {}).get("editable") and info["url"].startswith("file://"):
            return Path(info["url"][len("file://"):])
    except metadata.PackageNotFoundError:
        pass
    return Path.cwd()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlruns.db'}"


def local_artifact_root(uri: str) -> Path | None:
    """Artifacts of a SQLite store go beside its file (``mlruns/`` next to ``mlruns.db``).
    MLflow's own default is ``./mlruns`` under the current directory, which for a job
    submitted with --working-dir is a temporary copy that Ray deletes."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).parent / "mlruns"
    return None  # a tracking server decides where artifacts go


CREDENTIAL_VARS = "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"


def _auth_headers() -> dict[str, str]:
    """The credentials MLflow's REST client would send, so a server behind
    authentication is judged with them, not refused for their absence."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:  # MLflow's own order: basic auth first, then the token
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    return {}


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail before training, not hours later, when a tracking server does not answer or
    will not accept us."""
    if not uri.startswith(("http://", "https://")):
        return
    headers = _auth_headers()
    request = urllib.request.Request(uri.rstrip("/") + "/health", headers=headers)
    try:
        urllib.request.urlopen(request, timeout=timeout_s).close()
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            sent = ("MLFLOW_TRACKING_TOKEN" if headers.get("Authorization", "").startswith("Bearer")
                    else "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD")
            fix = (f"the credentials in {sent} were refused; check them" if headers
                   else f"it needs credentials: set {CREDENTIAL_VARS}")
            raise UserError(f"MLFLOW_TRACKING_URI={uri} answers HTTP {e.code} ({e.reason}): {fix}") from e
        raise UserError(f"MLFLOW_TRACKING_URI={uri} answers HTTP {e.code} ({e.reason}) at /health; "
                        "check that the URI points at an MLflow tracking server") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(
            f"MLFLOW_TRACKING_URI={uri} does not answer ({reason}); start the server, "
            "fix the URI, or unset it to use the project's local store"
        ) from e


def client() -> MlflowClient:
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def experiment_id(c: MlflowClient, name: str) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    root = local_artifact_root(c.tracking_uri)
    return c.create_experiment(name, artifact_location=(root / name).as_uri() if root else None)


def filter_quote(value: str, what: str = "a search value") -> str:
    """`value` as a string literal in MLflow's search filter syntax. The filter parser
    has no escape: a value is taken verbatim between its quotes, so one holding a single
    quote must be in double quotes and one holding both cannot be written at all."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise UserError(f"{what} {value!r}: use either ' or \" in it, not both (MLflow's search filters cannot match it)")


def find_run(c: MlflowClient, exp_id: str, run_name: str) -> str | None:
    runs = c.search_runs([exp_id], filter_string=f"tags.`{RUN_NAME_TAG}` = {filter_quote(run_name, '--name')}",
                         max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


def start_or_resume_run(c: MlflowClient, exp_id: str, run_name: str,
                        params: dict, tags: dict | None = None) -> tuple[str, bool]:
    """The run named `run_name` (resumed, status back to RUNNING) or a new one."""
    run_id = find_run(c, exp_id, run_name)
    if run_id is not None:
        c.update_run(run_id, status="RUNNING")
        return run_id, True
    run = c.create_run(exp_id, run_name=run_name, tags={RUN_NAME_TAG: run_name, **(tags or {})})
    c.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    return run.info.run_id, False


def logged_steps(c: MlflowClient, run_id: str, key: str) -> set[int]:
    return {m.step for m in c.get_metric_history(run_id, key)}


def log_epoch(c: MlflowClient, run_id: str, epoch: int, metrics: dict[str, float]) -> bool:
    """Log one epoch's metrics at step=epoch unless they are there already (a resumed
    run replays the epoch of its checkpoint): each step is logged exactly once."""
    if epoch in logged_steps(c, run_id, "val_top1_err"):
        return False
    now = int(time.time() * 1000)
    c.log_batch(run_id, metrics=[Metric(k, float(v), now, epoch) for k, v in metrics.items()])
    return True


def log_resume(c: MlflowClient, run_id: str, epoch: int) -> None:
    """Mark where a run was picked up again: metric `resumed_at_epoch` with value and step
    the epoch it went on from, one entry per resumption (a restarted worker, a rerun
    driver), so a run's history shows that no epoch before it was trained twice."""
    c.log_metric(run_id, "resumed_at_epoch", float(epoch), step=epoch)


def log_pytorch_model(run_id: str, model: Any, name: str = "model", metadata: dict | None = None) -> str:
    """Log `model` (any registered network: each takes float32 NCHW 224x224) as an MLflow
    PyTorch model of run `run_id`, exported with torch.export ("pt2"), not pickled: loading it runs no code
    from the file, and MLflow can verify that before it loads (with
    MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false). ``mlflow.pytorch.load_model`` returns the
    exported graph with the trained weights, in eval mode, and needs torch, not this project."""
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    model = model.eval()
    with torch.no_grad():
        num_classes = model(torch.zeros(1, 3, 224, 224)).shape[1]
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, 224, 224))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes))]))
    torch_version = torch.__version__.split("+")[0]
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        info = mlflow.pytorch.log_model(
            model, name=name, serialization_format="pt2", signature=signature,
            input_example=np.zeros((2, 3, 224, 224), np.float32),  # batch 2: the batch dimension stays dynamic
            pip_requirements=[f"torch=={torch_version}", f"mlflow=={mlflow.__version__}"], metadata=metadata,
            # MLflow would load the model it just wrote and run the example through it, and
            # only warn if that failed (~1.4 s a run on 2 vCPUs): the checkpoint it comes
            # from has been loaded already, and the tests load the logged model.
            validate_serving_input=False)
    return info.model_uri
