"""The jobs as modules: `jobs/` is a folder of scripts, not a package, so tests load a job
by path and call its `main(argv)` in process, as `python jobs/<name>.py argv` would."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def load_job(name: str) -> ModuleType:
    module_name = f"job_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, JOBS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # a job's dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[module_name]
