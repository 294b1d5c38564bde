"""The cluster configs are real files users apply: they must parse, validate, name jobs
and flags that exist, and ask for the resources their jobs' flags need."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.runtime_env import RuntimeEnv

from alexnet.ray_setup import RAY_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"


def pinned(package: str) -> str:
    line = next(x for x in (ROOT / "requirements.txt").read_text().splitlines() if x.startswith(package))
    return line.split("==")[1].strip()


def job_flags(script: str) -> set[str]:
    """The flags a job's --help lists."""
    out = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return set(re.findall(r"--[a-z][a-z0-9-]*", out.stdout))


def parse_command(argv: list[str]) -> tuple[str, dict[str, str]]:
    """'python .../jobs/x.py --a 1 --b' -> ('jobs/x.py', {'--a': '1', '--b': ''})."""
    script = argv[argv.index("python") + 1]
    script = "jobs/" + script.split("/jobs/")[-1] if "/jobs/" in script else script
    flags, rest = {}, argv[argv.index("python") + 2:]
    for i, token in enumerate(rest):
        if token.startswith("--"):
            nxt = rest[i + 1] if i + 1 < len(rest) else ""
            flags[token] = "" if nxt.startswith("--") else nxt
    return script, flags


def check_job(script: str, flags: dict[str, str]) -> None:
    assert (ROOT / script).is_file(), script
    unknown = set(flags) - job_flags(script)
    assert not unknown, f"{script} has no flags {unknown}"
    workers = int(flags.get("--workers", 1))
    assert int(flags.get("--batch-size", 128)) % workers == 0


def launcher_submit_command(text: str) -> list[str]:
    """The `ray job submit ... -- python jobs/...` command in the config's header comment."""
    lines = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]
    start = next(i for i, line in enumerate(lines) if line.startswith("ray job submit"))
    command = []
    for line in lines[start:]:
        command.append(line.rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    return shlex.split(" ".join(command))


def test_launcher_config_is_valid_and_fits_its_training_command() -> None:
    text = (CLUSTER / "aws-gpu.yaml").read_text()
    config = yaml.safe_load(text)
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    assert config["docker"]["image"].startswith(f"rayproject/ray:{pinned('ray')}-")
    assert f'"torch=={pinned("torch")}"' in " ".join(config["setup_commands"])

    script, flags = parse_command(launcher_submit_command(text))
    assert script == "jobs/train.py"
    check_job(script, flags)
    types = config["available_node_types"]
    gpus = sum(t.get("min_workers", 0) * t["resources"].get("GPU", 0) for t in types.values())
    assert int(flags["--workers"]) <= gpus, "the training workers need one GPU each"
    assert any(t["resources"].get("GPU", 0) == 0 and t["resources"].get("CPU", 0) >= 32
               for name, t in types.items() if name != config["head_node_type"]), "CPU nodes for augmentation"


def kube_documents() -> list[dict]:
    """kuberay-rayjob.yaml: the RayJob and the NetworkPolicy that fences it, as `kubectl apply` reads them."""
    return [d for d in yaml.safe_load_all((CLUSTER / "kuberay-rayjob.yaml").read_text()) if d]


def rayjob() -> dict:
    return next(d for d in kube_documents() if d["kind"] == "RayJob")


def test_rayjob_manifest_names_a_real_job_and_enough_gpus() -> None:
    job = rayjob()
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    script, flags = parse_command(shlex.split(spec["entrypoint"]))
    assert script == "jobs/train.py"
    check_job(script, flags)
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert env["working_dir"] == "/app"  # the project's place in the image; this checkout stands in for it
    RuntimeEnv(**{**env, "working_dir": str(ROOT)})  # Ray's own validation
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == pinned("ray")
    groups = cluster["workerGroupSpecs"]
    limits = [(g["replicas"], g["template"]["spec"]["containers"][0]["resources"]["limits"]) for g in groups]
    gpus = sum(n * int(lim.get("nvidia.com/gpu", 0)) for n, lim in limits)
    assert int(flags["--workers"]) <= gpus
    assert any("nvidia.com/gpu" not in lim and int(lim["cpu"]) >= 32 for _, lim in limits)
    assert flags["--data"].startswith("s3://") and flags["--storage"].startswith("s3://")  # no shared volume
    assert env["env_vars"]["ALEXNET_STORE_ENV_TO_WORKERS"] == "0"  # every pod has the keys: none in the job's record
    for template in [cluster["headGroupSpec"]["template"], *(g["template"] for g in groups)]:
        # every pod that reads the bucket (the driver on the head, the actors, the workers)
        # gets the store's variables from a Secret, optional where a service account's role serves
        container = template["spec"]["containers"][0]
        assert {"secretRef": {"name": "alexnet-s3", "optional": True}} in container.get("envFrom", [])
        assert not any(e["name"].startswith("AWS_") and "value" in e for e in container.get("env", []))


@pytest.mark.parametrize("path", ["runtime_env.yaml"])
def test_runtime_env_is_valid_and_leaves_large_folders_behind(path: str) -> None:
    env = yaml.safe_load((CLUSTER / path).read_text())
    RuntimeEnv(**env)
    assert {".venv/", "data/", "runs/", "mlruns/", "mlruns.db"} <= set(env["excludes"])


def test_every_way_to_start_ray_passes_the_project_settings() -> None:
    """A raylet reads them from `ray start`'s environment (alexnet/ray_setup.py)."""
    wanted = [f"{name}={value}" for name, value in RAY_SETTINGS.items()]
    launcher = yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands")
              for c in launcher[key] if "ray start" in c]
    makefile = (ROOT / "Makefile").read_text()
    starts.append(next(line for line in makefile.splitlines() if "start --head" in line))
    assert len(starts) == 3
    for command in starts:
        assert all(w in command.split(" start ")[0] for w in wanted), command

    cluster = rayjob()["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert {k: env.get(k) for k in RAY_SETTINGS} == RAY_SETTINGS, container["name"]


def launcher_start_commands(config: dict) -> list[str]:
    return [c for key in ("head_start_ray_commands", "worker_start_ray_commands") for c in config[key]
            if "ray start" in c]


def test_launcher_starts_every_node_with_token_auth_and_keeps_the_dashboard_local() -> None:
    """Ray 2.60 requires a token only where RAY_AUTH_MODE=token is in `ray start`'s
    environment (or ~/.ray/auth_token already exists, which a fresh node lacks)."""
    text = (CLUSTER / "aws-gpu.yaml").read_text()
    config = yaml.safe_load(text)
    starts = launcher_start_commands(config)
    assert len(starts) == 2
    for command in starts:
        assert "RAY_AUTH_MODE=token" in command.split(" ray start ")[0].split(), command
    head = next(c for c in starts if "--head" in c)
    assert re.search(r"--dashboard-host[= ]127\.0\.0\.1\b", head), head
    assert "0.0.0.0" not in yaml.safe_dump(config), "nothing in the launcher config listens on every interface"
    # Every node gets the token at Ray's default path, copied from a file outside the project.
    source = config["file_mounts"]["~/.ray/auth_token"]
    assert source.startswith(("~/", "/")) and not (ROOT / source).exists()
    header = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]
    assert any(line.startswith("ray dashboard cluster/aws-gpu.yaml") for line in header)  # the SSH tunnel
    assert any("RAY_AUTH_MODE=token" in line and "RAY_AUTH_TOKEN_PATH=" in line for line in header)
    assert "--address http://127.0.0.1:8265" in " ".join(launcher_submit_command(text))


def test_rayjob_takes_the_token_from_a_secret_and_a_network_policy_fences_it() -> None:
    spec = rayjob()["spec"]
    cluster = spec["rayClusterSpec"]
    secret = cluster["authOptions"]["secretName"]
    assert cluster["authOptions"]["mode"] == "token"
    templates = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"]),
                 spec["submitterPodTemplate"]]
    labels = {}
    for template in templates:
        labels.update(template["metadata"]["labels"])
        for container in template["spec"]["containers"]:
            env = {e["name"]: e for e in container["env"]}
            assert env["RAY_AUTH_MODE"].get("value") == "token", container["name"]
            token = env["RAY_AUTH_TOKEN"]
            assert "value" not in token, f"{container['name']}: a literal token"
            assert token["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "auth_token"}, container["name"]
            assert 10001 not in {p["containerPort"] for p in container.get("ports", [])}, "no Ray Client port"

    policy = next(d for d in kube_documents() if d["kind"] == "NetworkPolicy")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector and all(t["metadata"]["labels"].items() >= selector.items() for t in templates)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    for rule in policy["spec"]["ingress"]:
        for peer in rule["from"]:
            if "namespaceSelector" in peer:  # from outside the job's pods: the operator, to the dashboard only
                assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "kuberay-operator"}
                assert rule["ports"] == [{"port": 8265, "protocol": "TCP"}]
            else:
                assert peer == {"podSelector": {"matchLabels": selector}}


@pytest.mark.parametrize("path", ["aws-gpu.yaml", "kuberay-rayjob.yaml", "runtime_env.yaml", "README.md"])
def test_no_cluster_file_holds_a_token(path: str) -> None:
    text = (CLUSTER / path).read_text()
    assert not re.search(r"\b[0-9a-fA-F]{32,}\b|\b[A-Za-z0-9+/]{40,}={0,2}", text), "a literal token"
    assert not re.search(r"RAY_AUTH_TOKEN=[^$\s]", text), "a token set by value"
    if path.endswith(".yaml"):
        docs = [d for d in yaml.safe_load_all(text) if d]
        assert not any(d.get("kind") == "Secret" for d in docs), "the Secret is made with kubectl, not kept here"


def test_the_launcher_keeps_data_in_the_bucket_with_each_nodes_role() -> None:
    """No shared file system: the shards and checkpoints are in S3, reached with each
    node's instance profile; no key is written in any cluster file."""
    config = yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())
    _, flags = parse_command(launcher_submit_command((CLUSTER / "aws-gpu.yaml").read_text()))
    assert flags["--data"].startswith("s3://") and flags["--storage"].startswith("s3://")
    for name, node in config["available_node_types"].items():
        assert "Name" in node["node_config"]["IamInstanceProfile"], name
    assert "initialization_commands" not in config and "nfs" not in json.dumps(config).lower()
    for path in CLUSTER.iterdir():
        text = path.read_text()
        # a key by value in any spelling: KEY=..., KEY: ..., "KEY": "...", {name: KEY, value: ...}
        assert not re.search(r"AWS_(SECRET_ACCESS_KEY|ACCESS_KEY_ID|SESSION_TOKEN)[\"']?\s*[:=,]\s*"
                             r"(value:\s*)?[\"']?[A-Za-z0-9/+]{16,}", text), path.name
        assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{12,}", text), path.name
