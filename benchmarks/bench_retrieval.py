"""Top-K retrieval alone, exact against ScaNN, on trained embeddings: speed, share of the matmul peak, recall.

    python benchmarks/bench_retrieval.py                          # 100 000 users x 100 000 items, d = 64
    python benchmarks/bench_retrieval.py --users 20000 --items 20000 --repeats 1
    python benchmarks/bench_retrieval.py --bundle runs/retrieval-64 --data /tmp/data   # reuse both

Writes seeded synthetic Parquet tables (`write_synthetic_parquet`, seed 1) and trains
a retrieval bundle on them with 64-unit towers (one epoch, no refit), unless
`--bundle` and `--data` name existing ones; embeds every user (the job's query
policy) and every item, then times, median of --repeats, on the same embeddings
and seen lists (every user's interactions excluded):

- exact: `scoring.ExactIndex.top_k`, the job's kernel, as GFLOP/s (2 x users x
  items x dim per run) and as a share of a large fp32 `tf.matmul` measured in the
  same run;
- scann: `ann.ScannIndex` at its default settings, the index build timed apart
  from the search, and recall@K against the exact lists of every user.

Prints a JSON line and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

import recsys_core  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

# isort: split
from common import matmul_peak_gflops, median_seconds

from recsys_core.config import DataConfig, experiment
from recsys_core.data import load_data
from recsys_core.data.synthetic import write_synthetic_parquet
from recsys_core.serving.ann import ScannIndex, recall
from recsys_core.serving.recommend import BundleScorer, build_item_index, query_inputs, user_blocks
from recsys_core.serving.scoring import ExactIndex
from recsys_core.training.trainer import run_experiment


def train_bundle(data: DataConfig, directory: str, dim: int) -> str:
    config = experiment("ml100k")
    config.data = data
    config.training.models = ("retrieval",)
    config.training.output_dir = directory
    config.training.verbose = 0
    config.training.refit = False
    config.training.eval_ks = (100,)
    config.retrieval.epochs = 1
    config.retrieval.embedding_dim = dim
    config.retrieval.tower_layers = (dim,)
    config.list_ranker.enabled = False  # no second stage is measured here
    return run_experiment(config)


def embeddings(bundle: str, data) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """`[users, dim]` query embeddings, `[items, dim]` item embeddings and every user's seen items."""
    scorer = BundleScorer(bundle)
    index = build_item_index(scorer, data.items)
    queries, seen = [], []
    for block in user_blocks(data.users, data.ratings, data.items, block_size=4096):
        query = query_inputs(block, index, scorer.schema, 1_795_000_000, scorer.history_length)
        queries.append(scorer.embed_users(query))
        seen += block.seen
    return np.concatenate(queries), index.embeddings, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bundle", help="a retrieval bundle trained on --data (skips training)")
    parser.add_argument("--data", help="Parquet tables of write_synthetic_parquet (skips writing them)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.data or os.path.join(scratch, "data")
        if not args.data:
            write_synthetic_parquet(path, args.users, args.items, interactions_per_user=10, seed=1)
        data_config = DataConfig(source="parquet", path=path)
        bundle = args.bundle or train_bundle(data_config, os.path.join(scratch, "runs"), args.dim)
        queries, items, seen = embeddings(bundle, load_data(data_config))
    users, dim = queries.shape
    peak = matmul_peak_gflops()
    exact_index = ExactIndex(items)
    exact_seconds, exact_runs = median_seconds(lambda: exact_index.top_k(queries, seen, args.k), args.repeats)
    _, truth = exact_index.top_k(queries, seen, args.k)
    started = time.perf_counter()
    scann_index = ScannIndex(items)
    build_seconds = time.perf_counter() - started
    scann_seconds, scann_runs = median_seconds(lambda: scann_index.top_k(queries, seen, args.k), args.repeats)
    hits, relevant = recall(scann_index.top_k(queries, seen, args.k)[1], truth)
    exact_gflops = 2 * users * len(items) * dim / exact_seconds / 1e9
    result = {
        "users": users,
        "items": len(items),
        "dim": dim,
        "k": args.k,
        "matmul_peak_gflops": peak,
        "exact_seconds": exact_seconds,
        "exact_runs": exact_runs,
        "exact_gflops": exact_gflops,
        "exact_share_of_peak": exact_gflops / peak,
        "exact_users_per_second": users / exact_seconds,
        "scann_build_seconds": build_seconds,
        "scann_search_seconds": scann_seconds,
        "scann_runs": scann_runs,
        "scann_users_per_second": users / scann_seconds,
        "scann_speedup": exact_seconds / scann_seconds,
        "scann_speedup_with_build": exact_seconds / (scann_seconds + build_seconds),
        "scann_recall_at_k": hits / relevant,
    }
    print(json.dumps(result), flush=True)
    print(
        f"\n{users} users x {len(items)} items, d = {dim}, top-{args.k}, seen items excluded; peak {peak:.0f} GFLOP/s"
    )
    print(f"{'index':<8} {'seconds':>8} {'users/s':>9} {'GFLOP/s':>8} {'% peak':>7} {'recall@K':>9}")
    print(
        f"{'exact':<8} {exact_seconds:>8.2f} {users / exact_seconds:>9.0f} {exact_gflops:>8.0f} "
        f"{100 * exact_gflops / peak:>6.1f}% {1.0:>9.3f}"
    )
    print(
        f"{'scann':<8} {scann_seconds:>8.2f} {users / scann_seconds:>9.0f} {'':>8} {'':>7} {hits / relevant:>9.3f}"
        f"   ({result['scann_speedup']:.1f}x faster; build {build_seconds:.1f} s, "
        f"{result['scann_speedup_with_build']:.1f}x with it)"
    )


if __name__ == "__main__":
    main()
