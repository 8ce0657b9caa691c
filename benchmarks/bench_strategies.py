"""Strategy parity and training speed on MovieLens-100K with file-based input, every strategy in one run.

    python benchmarks/bench_strategies.py                       # default, mirrored x2, mirrored x8, 2 workers
    python benchmarks/bench_strategies.py --strategies default,mirrored_8 --models retrieval,ranking

Each strategy is one `python train.py` run in its own process (devices are set per process):
`default` (one device), `mirrored_2` and `mirrored_8` (`--strategy mirrored --cpu-devices N`,
logical CPU devices), `multi_worker_2` (two local `multi_worker_mirrored` processes, TF_CONFIG).
Every run trains on the same examples: each writes them as TFRecord example files
(`data/example_files.py`, the same seed, the same rows) and reads them through tf.data per
input pipeline. Prints a JSON line per strategy, then a table of the
test figures (the job's retrieval recall@100 from the bundle, RMSE per rating model), their
differences from `default`, and training examples/s per model.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRATEGIES = {
    "default": [],
    "mirrored_2": ["--strategy", "mirrored", "--cpu-devices", "2"],
    "mirrored_8": ["--strategy", "mirrored", "--cpu-devices", "8"],
    "multi_worker_2": ["--strategy", "multi_worker_mirrored"],
}
TOLERANCE = {"mirrored_2": 0.005, "mirrored_8": 0.005, "multi_worker_2": 0.01}  # the parity bounds


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def train(strategy: str, models: str, data_path: str, output: str) -> tuple[dict, float]:
    """(metrics of the bundle, wall seconds) of one `train.py` run under `strategy`."""
    command = [sys.executable, "train.py", "--data-path", data_path, "--models", models, "--output-dir", output]
    command += ["--verbose", "0", *STRATEGIES[strategy]]
    workers = 2 if strategy == "multi_worker_2" else 1
    cluster = {"worker": [f"localhost:{_free_port()}" for _ in range(workers)]}
    started = time.perf_counter()
    processes = []
    for index in range(workers):
        env = dict(os.environ)
        if workers > 1:
            env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        processes.append(subprocess.Popen(command, cwd=REPO, env=env, **quiet))
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode:
            raise RuntimeError(f"{strategy}: train.py failed\n{stderr.decode()[-3000:]}")
    seconds = time.perf_counter() - started
    with open(os.path.join(output, open(os.path.join(output, "LATEST")).read(), "metrics.json")) as handle:
        return json.load(handle), seconds


def figures(metrics: dict) -> dict:
    result = {}
    if "lists" in metrics:
        result["recall_at_100"] = metrics["lists"]["retrieval"]["recall_at_100"]
    for model, values in metrics.items():
        if isinstance(values, dict) and "rmse" in values and model != "baselines":
            result[f"{model}_rmse"] = values["rmse"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", default=os.path.join(REPO, "..", "shared", "data", "ml-100k"))
    parser.add_argument("--models", default="retrieval,ranking,dlrm")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    args = parser.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as scratch:
        for strategy in args.strategies.split(","):
            metrics, seconds = train(strategy, args.models, args.data_path, os.path.join(scratch, strategy))
            speeds = {
                m: v["train_examples_per_second"]
                for m, v in metrics.items()
                if isinstance(v, dict) and "train_examples_per_second" in v
            }
            runs[strategy] = {"figures": figures(metrics), "examples_per_second": speeds, "wall_seconds": seconds}
            print(json.dumps({strategy: runs[strategy]}), flush=True)
    base = runs.get("default")
    names = sorted({name for run in runs.values() for name in run["figures"]})
    print(f"\n{'strategy':<16}" + "".join(f"{n:>22}" for n in names) + f"{'wall s':>8}  within bound")
    for strategy, run in runs.items():
        cells, within = [], True
        for name in names:
            value = run["figures"].get(name, float("nan"))
            delta = value - base["figures"][name] if base and strategy != "default" else 0.0
            within &= abs(delta) <= TOLERANCE.get(strategy, 0.0) or strategy == "default"
            cells.append(f"{value:>12.4f} ({delta:+.4f})")
        bound = "-" if strategy == "default" else f"{'yes' if within else 'NO'} (±{TOLERANCE[strategy]})"
        print(f"{strategy:<16}" + "".join(f"{c:>22}" for c in cells) + f"{run['wall_seconds']:>8.0f}  {bound}")
    models = sorted({m for run in runs.values() for m in run["examples_per_second"]})
    print("\ntraining examples/s (the final fit):")
    print(f"{'strategy':<16}" + "".join(f"{m:>12}" for m in models))
    for strategy, run in runs.items():
        print(f"{strategy:<16}" + "".join(f"{run['examples_per_second'].get(m, float('nan')):>12.0f}" for m in models))


if __name__ == "__main__":
    main()
