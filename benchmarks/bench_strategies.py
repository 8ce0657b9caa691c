"""Strategy parity and training speed on MovieLens-100K with file-based input, every strategy in one run.

    python benchmarks/bench_strategies.py                       # default, mirrored x2, mirrored x8, 2 workers
    python benchmarks/bench_strategies.py --strategies default,mirrored_8 --models retrieval,ranking
    python benchmarks/bench_strategies.py --strategies default,mirrored_8 --models dlrm --seeds 1,2,3,4,5

Each strategy is one `python train.py` run in its own process (devices are set per process):
`default` (one device), `mirrored_2` and `mirrored_8` (`--strategy mirrored --cpu-devices N`,
logical CPU devices), `multi_worker_2` (two local `multi_worker_mirrored` processes, TF_CONFIG).
Every run trains on the same examples: each writes them as TFRecord example files
(`data/example_files.py`, the same seed, the same rows) and reads them through tf.data per
input pipeline. Prints a JSON line per strategy, then a table of the
test figures (the job's retrieval recall@100 from the bundle, RMSE per rating model), their
differences from `default`, and training examples/s per model. With several `--seeds` (`training.seed`:
initialisation and shuffling; the split stays the same), each strategy runs once per seed and the table
shows means over seeds, with the standard error of each difference from `default` (paired by seed): one
seed cannot separate a strategy's effect from the spread between seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
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


def train(strategy: str, models: str, data_path: str, output: str, seed: int | None) -> tuple[dict, float]:
    """(metrics of the bundle, wall seconds) of one `train.py` run under `strategy`."""
    command = [sys.executable, "train.py", "--data-path", data_path, "--models", models, "--output-dir", output]
    command += ["--verbose", "0", *STRATEGIES[strategy]]
    if seed is not None:
        command += ["--override", f"training.seed={seed}"]
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
    parser.add_argument("--seeds", default="", help="comma-separated training seeds (default: the config's)")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")] if args.seeds else [None]
    runs, figures_by_seed = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in seeds:  # seed by seed, so that an interrupted benchmark has whole comparisons
            for strategy in args.strategies.split(","):
                output = os.path.join(scratch, f"{strategy}-{seed}")
                metrics, seconds = train(strategy, args.models, args.data_path, output, seed)
                speeds = {
                    m: v["train_examples_per_second"]
                    for m, v in metrics.items()
                    if isinstance(v, dict) and "train_examples_per_second" in v
                }
                run = {"figures": figures(metrics), "examples_per_second": speeds, "wall_seconds": seconds}
                print(json.dumps({strategy: run, "seed": seed}), flush=True)
                runs.setdefault(strategy, run)
                figures_by_seed.setdefault(strategy, []).append(run["figures"])
    base = figures_by_seed.get("default")
    names = sorted({name for runs_of in figures_by_seed.values() for f in runs_of for name in f})
    title = "mean over seeds (difference from default ± its standard error)" if len(seeds) > 1 else "figures"
    print(f"\n{title}:\n{'strategy':<16}" + "".join(f"{n:>32}" for n in names) + "  within bound")
    for strategy, runs_of in figures_by_seed.items():
        cells, within = [], True
        for name in names:
            values = [f[name] for f in runs_of]
            delta, error = 0.0, 0.0
            if base and strategy != "default":
                reference = [f[name] for f in base]
                delta = statistics.fmean(values) - statistics.fmean(reference)
                if len(seeds) > 1:  # paired by seed: each seed ran under both strategies
                    differences = [v - r for v, r in zip(values, reference, strict=True)]
                    error = statistics.stdev(differences) / len(differences) ** 0.5
            within &= abs(delta) <= TOLERANCE.get(strategy, 0.0) or strategy == "default"
            cells.append(f"{statistics.fmean(values):>12.4f} ({delta:+.4f} ± {error:.4f})")
        bound = "-" if strategy == "default" else f"{'yes' if within else 'NO'} (±{TOLERANCE[strategy]})"
        print(f"{strategy:<16}" + "".join(f"{c:>32}" for c in cells) + f"  {bound}")
    models = sorted({m for run in runs.values() for m in run["examples_per_second"]})
    print("\ntraining examples/s (the final fit, first seed):")
    print(f"{'strategy':<16}" + "".join(f"{m:>12}" for m in models))
    for strategy, run in runs.items():
        print(f"{strategy:<16}" + "".join(f"{run['examples_per_second'].get(m, float('nan')):>12.0f}" for m in models))


if __name__ == "__main__":
    main()
