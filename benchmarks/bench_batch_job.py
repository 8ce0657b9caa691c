"""Throughput of the in-process scoring kernel, stage by stage, and of the Beam job on the same data, in one run.

    python benchmarks/bench_batch_job.py                                   # ML-100K and synthetic 100k x 20k
    python benchmarks/bench_batch_job.py --scenarios synthetic_100k_users_20k_items --repeats 3
    python benchmarks/bench_batch_job.py --scenarios synthetic_100k_users_20k_items --bundle runs/bench
    python benchmarks/bench_batch_job.py --reranker list                  # the list ranker as the second stage

For each scenario it trains a small bundle (one epoch of retrieval and ranking, no
refit: the cost of scoring does not depend on model quality), unless `--bundle`
names one trained on the same data. The synthetic scenario's tables are written
as Parquet once (`write_synthetic_parquet`, seed 1, not timed); the bundle is
trained on them, the kernel reads them into memory and the job reads the files.

- kernel: `recsys_core.serving.recommend` in this process, exactly what a job worker runs
  per block (query tower, exact top-100 with seen items excluded, re-rank every
  candidate with `ranking`, or with `--reranker list` add the list ranker's other
  candidates, rate them with `ranking`, compute their features and order them by
  the list ranker; output rows), blocks of 1 024 users side by side
  (`recommend_blocks`). Users/s from loading the bundle and embedding every item to
  the last block, and of the blocks alone; median of --repeats. A second pass,
  one block at a time, times each stage.
- job: `jobs.batch_recommend.run` on the DirectRunner, end to end (read, check,
  group, score, write, publish), the same settings, in three set-ups: its default
  (one worker in this process), 2 workers as threads, 2 worker processes (each
  imports TensorFlow and loads the bundle). Users/s over its whole wall time,
  median of --repeats, and its ratio to the kernel.
- peak: a large fp32 `tf.matmul` in the same run; the top-K stage's GFLOP/s
  (2 x users x items x dim) is given as a share of it.

Prints a JSON line per scenario and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import recsys_core  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

# isort: split
from common import matmul_peak_gflops

from jobs import batch_recommend
from recsys_core.config import DataConfig, experiment
from recsys_core.data import load_data
from recsys_core.data.activity import item_activity
from recsys_core.data.synthetic import write_synthetic_parquet
from recsys_core.serving.list_features import LIST_RANKER
from recsys_core.serving.recommend import (
    BundleScorer,
    RecommendSettings,
    build_item_index,
    recommend_block,
    recommend_blocks,
    user_blocks,
)
from recsys_core.training.trainer import run_experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name -> (users, items) of a synthetic scenario, or the path of a GroupLens directory
SCENARIOS = {
    "ml100k": os.path.join(REPO, "..", "shared", "data", "ml-100k"),
    "synthetic_100k_users_20k_items": (100_000, 20_000),
}
TOP_K, FINAL_K, BLOCK = 100, 20, 1024
# The same work in the kernel and the job: every candidate re-ranked by `ranking` (or by the list ranker).
RERANK = {
    "ranking": ["--reranker", "ranking", "--blend-weight", "1", "--popularity-weight", "0"],
    LIST_RANKER: ["--reranker", LIST_RANKER],
}
EXTRA = []
# With the list ranker, its item-to-item factors (EASE, an [items, items] inverse) up to this many items only.
LIST_RANKER_EASE_ITEMS = 5_000
# DirectRunner set-ups of the job: its default (one worker, in this process) and two workers as threads or processes.
JOB_MODES = {
    "default": [],
    "2_threads": ["--direct_num_workers", "2", "--direct_running_mode", "multi_threading"],
    "2_processes": ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"],
}


def scenario_data(name: str, scratch: str) -> DataConfig:
    """The scenario's data as a `DataConfig`; synthetic tables are written as Parquet under `scratch` first."""
    if isinstance(SCENARIOS[name], str):
        return DataConfig(source="grouplens", path=SCENARIOS[name])
    users, items = SCENARIOS[name]
    path = os.path.join(scratch, "data")
    write_synthetic_parquet(path, users, items, interactions_per_user=10, seed=1)
    return DataConfig(source="parquet", path=path)


def train_bundle(data: DataConfig, directory: str, reranker: str) -> str:
    config = experiment("ml100k")
    config.data = data
    config.training.models = ("retrieval", "ranking")
    config.training.output_dir = directory
    config.training.verbose = 0
    config.training.refit = False
    config.list_ranker.enabled = reranker == LIST_RANKER
    # The protocol's EASE baseline says nothing about scoring speed, but the list ranker's affinity needs it.
    config.training.ease_max_items = LIST_RANKER_EASE_ITEMS if reranker == LIST_RANKER else 0
    config.training.eval_ks = (100,)
    config.retrieval.epochs = config.ranking.epochs = 1
    return run_experiment(config)


def kernel_run(bundle: str, data, by_stage: bool, reranker: str) -> dict[str, float]:
    """Seconds of the job's per-block work without Beam: loading the bundle and embedding every item, grouping
    the users into blocks, and the blocks (`recommend_blocks`; with `by_stage`, one block at a time, each
    stage timed: query tower, top-K, re-rank, rows)."""
    started = time.perf_counter()
    scorer = BundleScorer(bundle)
    index = build_item_index(scorer, data.items, item_activity(data.ratings, data.items["item_id"]))
    settings = RecommendSettings(TOP_K, FINAL_K, reranker, timestamp=1_795_000_000, run_id="bench")
    seconds = {"load_and_items": time.perf_counter() - started}
    blocks = user_blocks(data.users, data.ratings, data.items, block_size=BLOCK)
    seconds["user_blocks"] = time.perf_counter() - started - seconds["load_and_items"]
    if by_stage:
        for block in blocks:
            recommend_block(scorer, block, index, settings, seconds=seconds)
    else:
        for _ in recommend_blocks(scorer, blocks, index, settings):
            pass
    seconds["total"] = time.perf_counter() - started
    seconds["blocks"] = seconds["total"] - seconds["load_and_items"] - seconds["user_blocks"]
    return seconds


def job_run(bundle: str, data: DataConfig, output: str, mode: str, reranker: str) -> float:
    """Users/s of the whole job in a `JOB_MODES` set-up, wall time from the call to the published pointer."""
    flags = ["--bundle", bundle, "--output", output, "--run-date", "2026-11-22", "--data-source", data.source]
    started = time.perf_counter()
    manifest = batch_recommend.run([*flags, "--data-path", data.path, *RERANK[reranker], *JOB_MODES[mode], *EXTRA])
    return manifest["user_count"] / (time.perf_counter() - started)


def measure(name: str, repeats: int, bundle: str | None, reranker: str) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        data_config = scenario_data(name, scratch)
        bundle = bundle or train_bundle(data_config, os.path.join(scratch, "runs"), reranker)
        data = load_data(data_config)
        peak = matmul_peak_gflops()
        kernels = [kernel_run(bundle, data, False, reranker) for _ in range(repeats)]
        staged = sorted((kernel_run(bundle, data, True, reranker) for _ in range(repeats)), key=lambda s: s["total"])
        stages = staged[len(staged) // 2]
        jobs = {
            mode: [
                job_run(bundle, data_config, os.path.join(scratch, f"out_{mode}_{i}"), mode, reranker)
                for i in range(repeats)
            ]
            for mode in JOB_MODES
        }
        dim = BundleScorer(bundle).manifest.signatures["query_embedding"].outputs["embedding"]["shape"][-1]
    users, items = data.users.num_rows, data.items.num_rows
    top_k_gflops = 2 * users * items * dim / stages["top_k"] / 1e9
    kernel = users / statistics.median(run["total"] for run in kernels)
    return {
        "users": users,
        "items": items,
        "dim": dim,
        "kernel_users_per_second": kernel,
        "kernel_blocks_users_per_second": users / statistics.median(run["blocks"] for run in kernels),
        "kernel_runs_seconds": kernels,
        "one_block_at_a_time_stage_seconds": stages,
        "rerank_over_top_k": stages["rerank"] / stages["top_k"],
        "job_users_per_second": {mode: statistics.median(runs) for mode, runs in jobs.items()},
        "job_runs": jobs,
        "job_over_kernel": {mode: statistics.median(runs) / kernel for mode, runs in jobs.items()},
        "matmul_peak_gflops": peak,
        "top_k_gflops": top_k_gflops,
        "top_k_share_of_peak": top_k_gflops / peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bundle", help="a bundle trained on the (single) scenario's data, instead of training one")
    parser.add_argument("--reranker", default="ranking", choices=sorted(RERANK), help="the second stage measured")
    args = parser.parse_args()
    results = {}
    for name in args.scenarios.split(","):
        results[name] = measure(name, args.repeats, args.bundle, args.reranker)
        print(json.dumps({name: results[name]}), flush=True)
    print(f"\n{'scenario':<32} {'kernel u/s':>10} {'blocks u/s':>10}   job u/s (job/kernel): " + ", ".join(JOB_MODES))
    for name, r in results.items():
        jobs = ", ".join(f"{r['job_users_per_second'][m]:.0f} ({r['job_over_kernel'][m]:.2f})" for m in JOB_MODES)
        print(f"{name:<32} {r['kernel_users_per_second']:>10.0f} {r['kernel_blocks_users_per_second']:>10.0f}   {jobs}")
    print("\none block at a time, seconds per stage (top-K as a share of the in-run matmul peak):")
    for name, r in results.items():
        stages = ", ".join(f"{stage} {s:.2f}" for stage, s in r["one_block_at_a_time_stage_seconds"].items())
        print(f"{name:<32} {stages}; top-K {100 * r['top_k_share_of_peak']:.1f}% of peak")


if __name__ == "__main__":
    main()
