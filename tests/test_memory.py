"""glibc keeps the network's freed buffers: a step's large tensors are not mapped afresh,
in the main thread (mallopt) and in a thread of its own, as Ray Train runs the training
loop (the environment a worker is started with)."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from alexnet.memory import network_process_env

STEPS = """
import resource, sys, threading, torch
from alexnet.memory import keep_network_memory
if sys.argv[1] == "mallopt":
    assert keep_network_memory()
torch.set_num_threads(1)
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt  # noqa: E731
def steps():
    x, conv, per_step = torch.ones(16, 64, 64, 64), torch.nn.Conv2d(64, 64, 3, padding=1), []
    for _ in range(8):  # a small training step: forward, backward, a buffer past glibc's 32 MB limit
        before = faults()
        conv(x).relu().sum().backward()
        torch.ones(48 << 20, dtype=torch.uint8).sum()
        per_step.append(faults() - before)
    print(sum(per_step[-3:]))  # the steady state, once the heap has grown to the step's size
if sys.argv[2] == "thread":
    t = threading.Thread(target=steps); t.start(); t.join()
else:
    steps()
"""


def steady_page_faults(mode: str, where: str, env: dict[str, str] | None = None) -> int:
    out = subprocess.run([sys.executable, "-c", STEPS, mode, where], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})})
    return int(out.stdout.split()[-1])


def huge_pages_always() -> bool:
    """With transparent huge pages always on, a fresh 48 MB mapping costs a few dozen
    faults, not thousands: page faults then say nothing about reuse."""
    try:
        return "[always]" in open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
@pytest.mark.skipif(huge_pages_always(), reason="transparent huge pages always on: faults do not count pages")
def test_freed_network_memory_is_reused_not_faulted_in_again() -> None:
    # three processes at once (each counts its own faults): most of each is importing torch
    with ThreadPoolExecutor(3) as pool:
        default, mallopt, worker = pool.map(lambda args: steady_page_faults(*args), [
            ("default", "thread"), ("mallopt", "main"), ("default", "thread", network_process_env({}))])
    assert default > 3 * (48 << 20) // 4096  # by default each step maps and zero-fills its buffers anew
    assert mallopt < default / 10
    assert worker < default / 10
