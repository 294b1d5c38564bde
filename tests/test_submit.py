"""`ray job submit` against a real local head, the way README.md tells users to do it."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from alexnet import tracking

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head(tmp_path: Path):
    """A head started from the venv with token auth, isolated from other Ray instances:
    its own token file, ports and temp dir; `--block` so stopping it stops only it."""
    token_file = tmp_path / "auth_token"
    token_file.write_text(uuid.uuid4().hex)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file),
           # a submitted job runs `python` from the head's PATH: make it the venv's
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           # the CPU path on any host: the head (and the jobs it runs) sees no GPU, so the
           # README's two-worker job is not refused on a one-GPU machine ("needs 2 GPUs")
           "CUDA_VISIBLE_DEVICES": ""}
    port, dash = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dash}",
         # the session's own Ray already holds the agents' default ports
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
         "--dashboard-host=127.0.0.1", "--num-cpus=2", "--num-gpus=0", "--disable-usage-stats",
         f"--temp-dir={temp_dir}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 120
    while time.time() < deadline:
        probe = subprocess.run([RAY, "job", "list", "--address", address], env=env,
                               capture_output=True, text=True)
        if probe.returncode == 0:
            break
        time.sleep(2)
    else:
        proc.terminate()
        pytest.fail(f"the head did not answer at {address}: {probe.stderr[-500:]}")
    yield address, env
    # A graceful stop takes Ray ~30 s, and the test is done with the head: stop the head
    # and every process it started at once (its own session, `start_new_session`).
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_submitted_training_job_succeeds_and_logs_to_mlflow(head, tiny_data: Path, s3_server) -> None:
    """The README's submission, with the shards in a bucket: the store's variables reach
    the job only through `--runtime-env-json` (the head was started without them), and
    the job must not hand them on a second time (Ray refuses a variable from both)."""
    address, env = head
    experiment = f"submit-{uuid.uuid4().hex[:8]}"
    data = f"s3://submit-tests/{experiment}"
    s3_server.upload(tiny_data, data)
    job = ["python", "jobs/train.py", "--data", data, "--epochs", "1", "--workers", "2",
           "--batch-size", "8", "--experiment", experiment, "--log-every", "1"]
    runtime_env = json.dumps({"env_vars": {"MLFLOW_TRACKING_URI": tracking.tracking_uri(), **s3_server.env}})
    submit = [RAY, "job", "submit", "--address", address, "--working-dir", ".",
              "--runtime-env-json", runtime_env, "--", *job]

    # Without the token setting on the CLI side the head refuses the job.
    no_token = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    refused = subprocess.run(submit, cwd=ROOT, env=no_token, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "auth" in (refused.stdout + refused.stderr).lower()

    for _ in range(30):  # the dashboard answers a few seconds before its job agent does
        done = subprocess.run(submit, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        if "No available agent" not in done.stderr:
            break
        time.sleep(2)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout.lower()
    client = MlflowClient(tracking.tracking_uri())
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and runs[0].data.params["data"] == data
    assert "val_top1_err" in runs[0].data.metrics
    # the paper's figure 3 for the AlexNet it trained: 96 kernels in the two groups of its two GPUs
    assert "conv1_kernels.png" in {a.path for a in client.list_artifacts(runs[0].info.run_id)}
