"""The whole nightly job on local defaults: train (unless a bundle is given), score everyone, show a sample.

    python -m jobs.nightly                                   # train on ML-100K, then score, into output/
    python -m jobs.nightly --bundle runs --run-date 2026-11-22 --final-k 10 --direct_num_workers 2

Flags it does not know are passed to `jobs.batch_recommend` (and from there to Beam).
"""

from __future__ import annotations

import argparse
import datetime
import sys

import recsys_core  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

# isort: split

import pyarrow as pa
import pyarrow.parquet as pq

from jobs import batch_recommend
from jobs.options import RecommendOptions, validate
from jobs.sources import locate_inputs
from recsys_core.config import EXPERIMENTS, experiment
from recsys_core.console import configure_logging
from recsys_core.data import DataError
from recsys_core.schema import ITEM_ID
from recsys_core.serving import outputs
from recsys_core.serving.validation import ITEMS


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", help="an existing bundle (or training output dir); trains one if absent")
    parser.add_argument("--experiment", default="ml100k", choices=sorted(EXPERIMENTS), help="what to train")
    parser.add_argument("--runs-dir", default="runs", help="where a new bundle goes")
    parser.add_argument("--output", default="output", help="root of the output tables")
    parser.add_argument("--run-date", default=datetime.date.today().isoformat())
    args, job_flags = parser.parse_known_args(argv)
    try:
        bundle = args.bundle or _train(args.experiment, args.runs_dir)
        flags = ["--bundle", bundle, "--output", args.output, "--run-date", args.run_date, *job_flags]
        manifest = batch_recommend.run(flags)
    except (ValueError, DataError) as error:
        print(f"nightly: error: {error}", file=sys.stderr)
        return 2
    _show(args.output, args.run_date, manifest, _item_texts(flags))
    return 0


def _train(name: str, runs_dir: str) -> str:
    from recsys_core.training.trainer import run_experiment

    config = experiment(name)
    config.training.output_dir = runs_dir
    return run_experiment(config)


def _item_texts(flags: list[str]) -> pa.Table | None:
    """`item_id` and the schema's first item text feature (a title), from the items the job read; None
    where the schema has none."""
    settings = validate(RecommendOptions(flags))
    texts = [f.name for f in settings.manifest.schema.of("item") if f.kind == "text"]
    inputs = locate_inputs(settings.data, batch_recommend.rules_for(settings))
    if not texts or not inputs.has(ITEMS):
        return None
    columns = [ITEM_ID, texts[0]]
    if ITEMS in inputs.tables:
        return inputs.tables[ITEMS].select(columns)
    return pa.concat_tables(pq.read_table(path, columns=columns) for path in inputs.files[ITEMS])


def _show(output: str, run_date: str, manifest: dict, texts: pa.Table | None) -> None:
    print(f"\nrun {manifest['run_id']} with bundle {manifest['model']['bundle_version']}, published:")
    pointer = outputs.read_pointer(output, run_date)
    for table, files in pointer["files"].items():
        directories = ", ".join(sorted({f"{output}/{path.rsplit('/', 1)[0]}" for path in files}))
        print(f"  {table}: {manifest['row_counts'][table]} rows in {len(files)} files under {directories}")
    print(f"  read them through {outputs.pointer_path(output, run_date)}")
    recommendations = outputs.read_published(output, outputs.RECOMMENDATIONS, run_date).to_pandas()
    user = sorted(recommendations["user_id"].unique())[0]
    sample = recommendations[recommendations["user_id"] == user].sort_values("rank").head(5)
    columns = ["user_id", "rank", "item_id", "score", "retrieval_score", "ranking_score", "source"]
    sample = sample[columns]
    if texts is not None:  # the title beside the id
        titles = texts.to_pandas().drop_duplicates(ITEM_ID).astype({ITEM_ID: str})
        sample = sample.merge(titles, on=ITEM_ID, how="left")
    print(f"\ntop 5 of user {user}:\n{sample.to_string(index=False)}")


if __name__ == "__main__":
    sys.exit(main())
