"""Scale of the Beam job: wall time, users/s and peak memory as users grow, launcher included.

    python benchmarks/bench_scale.py                                   # 10 000 and 100 000 users x 100 000 items
    python benchmarks/bench_scale.py --users 10000,100000,1000000      # the issue's three sizes (long)

For each size it writes seeded synthetic Parquet tables in chunks
(`write_synthetic_parquet`, not timed), then runs `python -m jobs.batch_recommend`
as a subprocess on the DirectRunner with 2 worker processes, sampling the
resident memory of the whole process tree every 0.2 s. One small bundle, trained
once (`train_bundle`), serves every size; the job re-ranks nothing (`--reranker
none`). Prints a JSON line per size and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import recsys_core  # noqa: E402,F401  (selects Keras 2 before TensorFlow is imported)


class TreeMemory:
    """Peak resident memory of a process and all its children (sum), and of the process alone."""

    def __init__(self, pid: int) -> None:
        self._root = psutil.Process(pid)
        self.peak_total = self.peak_launcher = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                launcher = self._root.memory_info().rss
                children = sum(_rss(c) for c in self._root.children(recursive=True))
            except psutil.NoSuchProcess:
                return
            self.peak_launcher = max(self.peak_launcher, launcher)
            self.peak_total = max(self.peak_total, launcher + children)
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.NoSuchProcess:
        return 0


def train_bundle(directory: str) -> str:
    """One epoch of retrieval on 5 000 synthetic users x 2 000 items: the job's cost does not depend on model
    quality, and the offline protocol (EASE over the whole catalogue) would not fit 100 000 items here. Items
    beyond the bundle's vocabulary are embedded from their out-of-vocabulary id row and their features."""
    from recsys_core.config import DataConfig, experiment
    from recsys_core.training.trainer import run_experiment

    config = experiment("ml100k")
    config.data = DataConfig(source="synthetic", synthetic_users=5_000, synthetic_items=2_000)
    config.training.models = ("retrieval",)
    config.training.output_dir = directory
    config.training.verbose = 0
    config.training.refit = False
    config.retrieval.epochs = 1
    config.list_ranker.enabled = False  # no second stage is measured here
    return run_experiment(config)


def run_job(bundle: str, data: str, output: str, workers: int) -> dict:
    command = [sys.executable, "-m", "jobs.batch_recommend", "--bundle", bundle, "--output", output]
    command += ["--run-date", "2026-11-22", "--data-source", "parquet", "--data-path", data, "--reranker", "none"]
    command += ["--max-fallback-share", "1"]  # the bundle knows 5 000 of the users: the rest get the fallback
    if workers > 1:
        command += ["--direct_num_workers", str(workers), "--direct_running_mode", "multi_processing"]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    memory = TreeMemory(process.pid)
    _, stderr = process.communicate()
    memory.stop()
    seconds = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"the job failed:\n{stderr[-3000:]}")
    return {
        "seconds": seconds,
        "peak_total_gib": memory.peak_total / 2**30,
        "peak_launcher_gib": memory.peak_launcher / 2**30,
    }


def main() -> None:
    from recsys_core.data.synthetic import write_synthetic_parquet

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", default="10000,100000")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--per-user", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scratch", default=None, help="where the tables go (default: a temporary directory)")
    args = parser.parse_args()
    sizes = [int(u) for u in args.users.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        bundle = None
        for users in sizes:
            data = os.path.join(scratch, f"data-{users}")
            counts = write_synthetic_parquet(data, users, args.items, args.per_user, seed=1)
            bundle = bundle or train_bundle(os.path.join(scratch, "runs"))
            result = run_job(bundle, data, os.path.join(scratch, f"out-{users}"), args.workers)
            result.update(users=users, items=args.items, interactions=counts["interactions"])
            result["users_per_second"] = users / result["seconds"]
            print(json.dumps(result), flush=True)
            rows.append(result)
    print(f"\n{'users':>10} {'items':>8} {'wall s':>8} {'users/s':>8} {'peak GiB (all)':>15} {'launcher GiB':>13}")
    for r in rows:
        print(
            f"{r['users']:>10} {r['items']:>8} {r['seconds']:>8.1f} {r['users_per_second']:>8.0f} "
            f"{r['peak_total_gib']:>15.2f} {r['peak_launcher_gib']:>13.2f}"
        )


if __name__ == "__main__":
    main()
