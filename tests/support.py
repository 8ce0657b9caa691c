"""Helpers the tests import (fixtures live in `conftest.py`): where the repository and the data are, a
measured subprocess, a free port, a published table as consumers read it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ML100K = os.path.join(REPO, "..", "shared", "data", "ml-100k")
SPLITS = os.path.join(REPO, "..", "shared", "data", "ml-100k-splits")

_PEAK_MEMORY = """
def reset_peak():
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # this process's peak resident memory := its resident memory now


def peak_bytes():
    with open("/proc/self/status") as handle:
        return int(next(line for line in handle if line.startswith("VmHWM")).split()[1]) * 1024


"""


def run_measured(script: str, *args) -> list[int]:
    """Runs `script` in a fresh Python, which may call `reset_peak()` and `peak_bytes()`; returns the integers
    it prints. (The peak is the process's own, VmHWM: `ru_maxrss` would start at the pytest process's
    resident memory, which a forked child inherits through exec, and hide any smaller peak.)"""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_MEMORY + script, *map(str, args)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [int(value) for value in done.stdout.split()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def published(output, table: str, run_date: str | None = None):
    """A published table as pandas, read the way consumers must: through the date's pointer."""
    from recsys_core.serving import outputs

    return outputs.read_published(str(output), table, run_date).to_pandas()
