"""The local Ray the jobs (and this suite) start carries the project's Ray settings."""

import os
from pathlib import Path

from alexnet.ray_setup import RAY_SETTINGS


def processes() -> dict[int, tuple[str, int]]:
    """pid -> (name, parent pid), from /proc."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        out[int(stat.parent.name)] = (name, int(text[text.rindex(")") + 2:].split()[1]))
    return out


def descendants(pid: int, table: dict[int, tuple[str, int]]) -> set[int]:
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, (_, parent) in table.items() if parent in frontier} - found
        found |= frontier
    return found


def test_the_local_raylet_runs_with_the_project_settings(ray_session) -> None:
    table = processes()
    raylets = [p for p in descendants(os.getpid(), table) if table[p][0] == "raylet"]
    assert raylets, "init_ray started no local raylet"
    for pid in raylets:
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
        assert {k: env.get(k) for k in RAY_SETTINGS} == RAY_SETTINGS


def test_the_sessions_ray_is_cpu_only_on_any_host(ray_session) -> None:
    """conftest's Ray holds no GPU and its tasks see none, so that `device="auto"` means
    the CPU in every test that trains or scores through it, on a GPU host too."""
    import ray

    @ray.remote(num_cpus=0)
    def visible_devices() -> str | None:
        return os.environ.get("CUDA_VISIBLE_DEVICES")

    assert ray.cluster_resources().get("GPU", 0) == 0
    assert ray.get(visible_devices.remote()) == ""
