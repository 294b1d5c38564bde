"""How the jobs start or join Ray, with the one Ray setting the input pipeline wants.

By default each raylet frees the memory of objects nobody references any more once a
second (`free_objects_period_milliseconds`). A training stream hands it a 100-300 MB
block every few tens of milliseconds, so until then the store places new blocks on
pages no process has touched yet, and every augmentation actor (new ones each epoch)
faults those pages in one by one. Freed at once, the store reuses the same pages: on 2
vCPUs (2026-11-23) the pipeline's first execution ran 25-30% faster and its steady rate 4-8%
(docs/performance.md).

A raylet reads the setting from its environment when it starts. A local Ray started by
`init_ray` inherits it; a cluster started elsewhere needs it in `ray start`'s
environment on every node (the Makefile's `cluster-up`, `cluster/aws-gpu.yaml`,
`cluster/kuberay-rayjob.yaml`). Without it everything still works, a little slower.

The job's runtime environment also carries the object store's variables that the driver
has (`alexnet.store.worker_env`: endpoint, keys, region), so that the actors reading
``--data s3://...`` and the workers writing ``--storage s3://...`` reach the same store
with the same credentials on every node.
"""

from __future__ import annotations

import os
from typing import Any

import ray

from alexnet.store import worker_env

RAY_SETTINGS = {"RAY_free_objects_period_milliseconds": "0"}


def init_ray(**kwargs: Any) -> None:
    """`ray.init(**kwargs)`: joins RAY_ADDRESS or a running local head, else starts a
    local Ray with `RAY_SETTINGS` (values already in the environment win), with the
    object store's variables in the job's runtime environment. In a process already
    connected to Ray (a job called as a library), the connection is kept."""
    if ray.is_initialized():
        return
    for name, value in RAY_SETTINGS.items():
        os.environ.setdefault(name, value)
    store_env = worker_env()
    if "AWS_SESSION_TOKEN" in store_env:
        print("[ray] the workers get this shell's temporary AWS credentials (AWS_SESSION_TOKEN): a run that "
              "outlives them fails to read the store; give the nodes a role for long runs", flush=True)
    if store_env:
        runtime_env = dict(kwargs.pop("runtime_env", None) or {})
        runtime_env["env_vars"] = {**store_env, **runtime_env.get("env_vars", {})}
        kwargs["runtime_env"] = runtime_env
    ray.init(**kwargs)
