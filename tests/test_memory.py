"""glibc keeps the network's freed buffers: a step's large tensors are not mapped afresh."""

import subprocess
import sys

import pytest

STEPS = """
import resource, sys, torch
from alexnet.memory import keep_network_memory
if sys.argv[1] == "keep":
    assert keep_network_memory()
torch.set_num_threads(1)
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt  # noqa: E731
x, conv, per_step = torch.ones(16, 64, 64, 64), torch.nn.Conv2d(64, 64, 3, padding=1), []
for _ in range(8):  # a small training step: forward, backward, and a buffer past glibc's 32 MB limit
    before = faults()
    conv(x).relu().sum().backward()
    torch.ones(48 << 20, dtype=torch.uint8).sum()
    per_step.append(faults() - before)
print(sum(per_step[-3:]))  # the steady state, once the heap has grown to the step's size
"""


def steady_page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_network_memory_is_reused_not_faulted_in_again() -> None:
    default, kept = steady_page_faults("default"), steady_page_faults("keep")
    assert default > 3 * (48 << 20) // 4096  # by default each step maps and zero-fills its buffers anew
    assert kept < default / 10
