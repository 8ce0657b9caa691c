"""Preparing a run's splits from Parquet, streamed (`--out-of-core`) against read whole: wall and peak memory
as the interactions grow and the users and items do not.

    python benchmarks/bench_out_of_core.py                                # 1M and 10M ratings (about 15 min)
    python benchmarks/bench_out_of_core.py --ratings 300000,3000000 --schema ids

For each size it writes seeded synthetic Parquet tables (`write_synthetic_parquet`, files of about
60 000 ratings, not timed), then, each in its own process: `streaming.prepare` (both phases, every
example file, the protocol's user sample) and the in-memory path (`load_data`, `prepared.in_memory`, both
phases), and prints wall seconds, ratings/s and the peak resident memory of that process, the memory
TensorFlow and the users and items tables hold before any rating is read included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PREPARE = """
import json, resource, sys, tempfile, time
import recsys_core
from recsys_core.config import DataConfig
from recsys_core.data import load_data, prepared, streaming
from recsys_core.data.parquet_source import open_parquet_tables
from recsys_core.schema import load_schema

root, schema, how, scratch = sys.argv[1:5]
config = DataConfig(source="parquet", path=root, schema=schema, out_of_core=how == "streamed")
started = time.perf_counter()
directory = tempfile.mkdtemp(dir=scratch)
if how == "streamed":
    tables = open_parquet_tables(root, load_schema(schema))
    splits = streaming.prepare(tables, config, 100, directory, seed=0)
else:
    splits = prepared.in_memory(load_data(config), config, 100, directory, seed=0)
splits.phase("fit"), splits.phase("train")
print(json.dumps({"seconds": time.perf_counter() - started, "ratings": sum(splits.rows.values()),
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def prepare(root: str, schema: str, how: str, scratch: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _PREPARE, root, schema, how, scratch], cwd=REPO, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"{how} preparation failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    sys.path.insert(0, REPO)
    from recsys_core.data.synthetic import write_synthetic_parquet

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", default="1000000,10000000", help="interactions per size (approximate)")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--schema", default="movielens", help="the synthetic tables' schema to read: movielens or ids")
    parser.add_argument("--ways", default="streamed,whole", help="streamed, whole or both")
    parser.add_argument("--scratch", default=None, help="where tables and example files go (default: /tmp)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        for target in map(int, args.ratings.split(",")):
            per_user = max(1, target // args.users)
            root = os.path.join(scratch, f"data-{target}")
            counts = write_synthetic_parquet(
                root,
                args.users,
                args.items,
                per_user,
                seed=1,
                chunk_users=max(1, 60_000 // per_user),
                candidates=max(512, 4 * per_user),
            )
            for how in args.ways.split(","):
                result = prepare(root, args.schema, how, scratch)
                result.update(how=how, users=args.users, items=args.items, interactions=counts["interactions"])
                print(json.dumps(result), flush=True)
                rows.append(result)
    print(f"\n{'ratings':>10} {'how':>9} {'wall s':>8} {'ratings/s':>10} {'peak MiB':>9}")
    for r in rows:
        rate = r["ratings"] / r["seconds"]
        print(f"{r['ratings']:>10} {r['how']:>9} {r['seconds']:>8.1f} {rate:>10.0f} {r['peak_mib']:>9.0f}")


if __name__ == "__main__":
    main()
