"""Throughput of the Beam batch job against the same kernel called in-process, in one run.

    python benchmarks/bench_batch_job.py                        # ML-100K and synthetic 100k x 20k
    python benchmarks/bench_batch_job.py --scenarios ml100k     # just one

For each scenario it trains a small bundle (one epoch of retrieval and ranking;
the job's cost does not depend on model quality), then runs
`jobs.batch_recommend` on the DirectRunner and, in the same process, the
in-process kernel (`recsys_core.recommend` over the same user blocks, no Beam).
Reports users/s for both (median of --repeats) and their ratio, the kernel's
seconds per stage (query tower, top-K, re-rank, rows; from the median run), and
the top-K's GFLOP/s as a share of a large fp32 `tf.matmul` measured in the same
run (the machine's practical peak).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import tempfile
import time

import recsys_core  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

# isort: split
import tensorflow as tf

# isort: split
from jobs import batch_recommend
from recsys_core.config import DataConfig, experiment
from recsys_core.data import load_data
from recsys_core.data.tables import item_counts
from recsys_core.recommend import BundleScorer, RecommendSettings, build_item_index, recommend_block, user_blocks
from recsys_core.training import run_experiment

SCENARIOS = {
    "ml100k": DataConfig(source="grouplens", path="../shared/data/ml-100k"),
    "synthetic_100k_users_20k_items": DataConfig(
        source="synthetic", synthetic_users=100_000, synthetic_items=20_000, synthetic_interactions_per_user=10
    ),
}


def train_bundle(data: DataConfig, directory: str) -> str:
    config = experiment("ml100k")
    config.data = data
    config.training.models = ("retrieval", "ranking")
    config.training.output_dir = directory
    config.training.verbose = 0
    config.training.eval_ks = (100,)
    config.retrieval.epochs = config.ranking.epochs = 1
    return run_experiment(config)


def job_users_per_second(bundle: str, output: str, extra: list[str]) -> tuple[float, dict]:
    # The same work as the kernel below: re-rank every candidate with `ranking`.
    fixed = ["--reranker", "ranking", "--blend-weight", "1", "--popularity-weight", "0"]
    manifest = batch_recommend.run(["--bundle", bundle, "--output", output, "--run-date", "2026-11-22", *fixed, *extra])
    records = [json.loads(open(path).read()) for path in glob.glob(os.path.join(output, "_runs", "*.json"))]
    record = max(records, key=lambda r: r["started_at"])  # the pipeline's time, from the run's record
    return manifest["user_count"] / record["timings_seconds"]["located_to_scored"], manifest


def kernel_users_per_second(bundle: str, data, top_k: int = 100, final_k: int = 20) -> tuple[float, dict]:
    """The job's per-block work without Beam: load, embed items, then every user block; users/s and stage seconds."""
    started = time.perf_counter()
    scorer = BundleScorer(bundle)
    index = build_item_index(scorer, data.items, item_counts(data.ratings, data.items["item_id"]))
    settings = RecommendSettings(top_k, final_k, "ranking", timestamp=1_795_000_000, run_id="bench")
    stages = {"load_and_items": time.perf_counter() - started}
    for block in user_blocks(data.users, data.ratings, data.items, block_size=1024):
        recommend_block(scorer, block, index, settings, seconds=stages)
    stages["dim"] = index.embeddings.shape[1]
    return data.users.num_rows / (time.perf_counter() - started), stages


def matmul_peak_gflops(n: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of an `[n, n] @ [n, n]` fp32 `tf.matmul`, median of `repeats` after a warm-up."""
    a, b = tf.random.normal([n, n]), tf.random.normal([n, n])
    tf.matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        tf.matmul(a, b).numpy()
        times.append(time.perf_counter() - started)
    return 2 * n**3 / statistics.median(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--multi-process", action="store_true", help="also run the job with 2 DirectRunner workers")
    args = parser.parse_args()
    results = {}
    for name in args.scenarios.split(","):
        with tempfile.TemporaryDirectory() as scratch:
            bundle = train_bundle(SCENARIOS[name], os.path.join(scratch, "runs"))
            data = load_data(SCENARIOS[name])
            peak = matmul_peak_gflops()
            kernel_runs = sorted(kernel_users_per_second(bundle, data) for _ in range(args.repeats))
            kernel, stages = kernel_runs[len(kernel_runs) // 2]
            job = [job_users_per_second(bundle, os.path.join(scratch, f"out{i}"), [])[0] for i in range(args.repeats)]
            users, items, dim = data.users.num_rows, data.items.num_rows, stages.pop("dim")
            top_k_gflops = 2 * users * items * dim / stages["top_k"] / 1e9
            result = {
                "users": users,
                "items": items,
                "job_users_per_second": statistics.median(job),
                "kernel_users_per_second": kernel,
                "job_runs": job,
                "kernel_runs": [r[0] for r in kernel_runs],
                "kernel_stage_seconds": stages,
                "matmul_peak_gflops": peak,
                "top_k_gflops": top_k_gflops,
                "top_k_share_of_peak": top_k_gflops / peak,
            }
            result["job_over_kernel"] = result["job_users_per_second"] / result["kernel_users_per_second"]
            if args.multi_process:
                flags = ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]
                result["job_2_workers_users_per_second"] = job_users_per_second(bundle, f"{scratch}/mp", flags)[0]
            results[name] = result
            print(json.dumps({name: result}), flush=True)
    print(f"\n{'scenario':<32} {'job u/s':>9} {'kernel u/s':>11} {'ratio':>6} {'top-K % peak':>13}  kernel stages (s)")
    for name, r in results.items():
        stages = ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in r["kernel_stage_seconds"].items())
        print(
            f"{name:<32} {r['job_users_per_second']:>9.0f} {r['kernel_users_per_second']:>11.0f} "
            f"{r['job_over_kernel']:>6.2f} {100 * r['top_k_share_of_peak']:>12.1f}%  {stages}"
        )


if __name__ == "__main__":
    main()
