"""Nightly batch recommendations: bundle + interactions -> Parquet tables for one run date.

    python -m jobs.batch_recommend --bundle runs --output output --run-date 2026-11-22 \
        [--data-source grouplens --data-path ../shared/data/ml-100k] [--top-k 100 --final-k 20] \
        [--reranker auto|ranking|dlrm|dcn|multitask|none] [--blend-weight W]
        [Beam options: --runner, --direct_num_workers, ...]

Writes `recommendations`, `user_embeddings`, `item_embeddings`, `similar_items` and
`dead_letter` (input rows that failed validation) under `--output`, each partitioned
by `dt=<run date>`, with `_manifest.json` and `_SUCCESS` in every partition. The
launcher reads no rows: the workers read, check and group them.
"""

from __future__ import annotations

import sys
import time

import recsys_core  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

# isort: split
import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import TestOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from jobs import publish
from jobs.options import JobSettings, RecommendOptions, runs_locally, validate
from jobs.sources import JobInputs, locate_inputs
from jobs.transforms import (
    DEAD,
    NAMESPACE,
    BuildUserBlocks,
    CheckRows,
    EmbedItems,
    ItemEmbeddings,
    Popularity,
    ReadTable,
    RecommendUsers,
    SimilarItems,
    WriteTable,
)
from recsys_core import outputs
from recsys_core.console import configure_logging
from recsys_core.data import DataError
from recsys_core.export import bundle_schema
from recsys_core.recommend import RecommendSettings
from recsys_core.schema import ITEM_ID
from recsys_core.validation import INTERACTIONS, ITEMS, USERS, Rules, with_source

PUBLISHED = outputs.TABLES + (outputs.DEAD_LETTER,)


def rules_for(settings: JobSettings) -> Rules:
    """The bundle's schema, and the end of the run date as the latest plausible interaction."""
    return Rules(bundle_schema(settings.manifest), settings.timestamp + 86_400)


def build_pipeline(pipeline: beam.Pipeline, settings: JobSettings, inputs: JobInputs) -> None:
    """Wires the job: read -> check rows -> group users -> blocks -> top-K unseen -> re-rank -> five tables."""
    version = settings.manifest["bundle_version"]
    rules = rules_for(settings)
    recommend = RecommendSettings(
        top_k=settings.top_k,
        final_k=settings.final_k,
        reranker=settings.reranker,
        timestamp=settings.timestamp,
        run_id=settings.run_id,
        blend_weight=settings.blend_weight,
        popularity_weight=settings.popularity_weight,
        item_shard_size=settings.item_shard_size,
    )

    def write(table: str, tables) -> None:
        prefix = publish.staging_prefix(settings.output, settings.run_id, table, settings.run_date)
        tables | f"Write{table.title().replace('_', '')}" >> WriteTable(table, prefix)

    checked = {
        table: pipeline
        | f"Read{table.title()}" >> ReadTable(inputs, table)
        | f"Check{table.title()}" >> CheckRows(table, rules)
        for table in (INTERACTIONS, USERS, ITEMS)
        if inputs.has(table)
    }
    items = checked[ITEMS]["rows"] if ITEMS in checked else _items_from_interactions(checked[INTERACTIONS]["rows"])
    embedded = items | "EmbedItems" >> EmbedItems(settings.bundle, rules)
    index = embedded["index"]
    buckets = max(1, -(-inputs.estimated_users // settings.block_size))
    users = checked[USERS]["rows"] if USERS in checked else None
    spill = publish.shuffle_directory(settings.output, settings.run_id) if settings.shuffle == "files" else None
    grouped = (users, checked[INTERACTIONS]["rows"]) | "GroupUsers" >> BuildUserBlocks(
        rules, USERS in checked, buckets, settings.block_size, settings.max_seen_per_block, index, spill
    )
    popularity = checked[INTERACTIONS]["rows"] | "Popularity" >> Popularity(index)
    scored = grouped["blocks"] | "RecommendUsers" >> RecommendUsers(settings.bundle, recommend, index, popularity)
    write(outputs.RECOMMENDATIONS, scored[outputs.RECOMMENDATIONS])
    write(outputs.USER_EMBEDDINGS, scored[outputs.USER_EMBEDDINGS])
    write(outputs.ITEM_EMBEDDINGS, index | "ItemEmbeddings" >> ItemEmbeddings(version))
    similar = SimilarItems(settings.similar_k, version, settings.item_shard_size)
    write(outputs.SIMILAR_ITEMS, index | "SimilarItems" >> similar)
    dead = [checked[t][DEAD] for t in checked] + [embedded[DEAD], grouped[DEAD]]
    write(outputs.DEAD_LETTER, dead | "DeadLetters" >> beam.Flatten())


def _items_from_interactions(interactions):
    """Without an items table: one row per item id the interactions name (ids-only schemas)."""
    return (
        interactions
        | "ItemIds" >> beam.FlatMap(lambda rows: rows[ITEM_ID].to_pylist())
        | "Distinct" >> beam.Distinct()
        | "ToRows" >> beam.Map(lambda item: with_source(pa.table({ITEM_ID: [item]}), "interactions"))
    )


def run(argv: list[str] | None = None, pipeline: beam.Pipeline | None = None) -> dict:
    """Validates options, locates the inputs, runs the pipeline, publishes the partitions; returns the manifest.

    Args:
        argv: job and Beam flags.
        pipeline: a pipeline to build on (e.g. `TestPipeline`); by default one from the flags.

    Raises:
        ValueError / DataError: a bad option or input, or more invalid rows than `--max-bad-share`;
            nothing is published then.
    """
    options = RecommendOptions(argv)
    settings = validate(options)
    started = time.perf_counter()
    inputs = locate_inputs(settings.data, rules_for(settings))
    staging = FileSystems.join(settings.output, "_staging", settings.run_id)
    located = time.perf_counter()
    try:
        pipeline = pipeline or beam.Pipeline(runner=_local_runner(options), options=options)
        build_pipeline(pipeline, settings, inputs)
        result = pipeline.run()
        if options.view_as(TestOptions).dry_run:  # a Dataflow job description, built and not submitted
            return {"dry_run": True, "runner": type(pipeline.runner).__name__, "job": str(result.job.proto)}
        result.wait_until_finish()
        counters = _counters(result)
        input_rows = _input_rows(counters, settings.max_bad_share)
    except BaseException:
        if FileSystems.exists(staging):
            FileSystems.delete([staging])  # a failed run leaves nothing behind
        raise
    finished = time.perf_counter()
    manifest = {
        "schema_version": outputs.SCHEMA_VERSION,
        "run_id": settings.run_id,
        "run_date": settings.run_date,
        "tables": {name: {"schema": str(outputs.SCHEMAS[name])} for name in PUBLISHED},
        "row_counts": {name: counters.get(f"rows_written_{name}", 0) for name in PUBLISHED},
        "input_rows": input_rows,
        "user_count": counters.get("users_scored", 0) + counters.get("fallback_users", 0),
        "item_count": counters.get(f"rows_written_{outputs.ITEM_EMBEDDINGS}", 0),
        "model": {"bundle": settings.bundle, "bundle_version": settings.manifest["bundle_version"]},
        "data_lineage": inputs.lineage,
        "parameters": {
            "top_k": settings.top_k,
            "final_k": settings.final_k,
            "reranker": settings.reranker,
            "blend_weight": settings.blend_weight,
            "popularity_weight": settings.popularity_weight,
            "run_date_timestamp": settings.timestamp,
            "query_policy": settings.manifest.get("query_policy"),
            "max_bad_share": settings.max_bad_share,
            "item_shard_size": settings.item_shard_size,
            "shuffle": settings.shuffle,
        },
        "timings_seconds": {"locate_inputs": located - started, "pipeline": finished - located},
        "counters": counters,
        "runner": type(pipeline.runner).__name__,
    }
    publish.publish(settings.output, settings.run_id, settings.run_date, manifest, PUBLISHED)
    return manifest


def _counters(result) -> dict[str, int]:
    """The job's Beam counters, summed over the steps that increment the same name."""
    totals = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + value
    return totals


def _local_runner(options: RecommendOptions):
    """For the default DirectRunner, its FnApiRunner engine (in-process or `--direct_num_workers` processes).

    Beam's DirectRunner first tries to download the Prism runner, which fails
    offline with a page of log lines before falling back to this same engine.
    """
    if runs_locally(options):
        return FnApiRunner()
    return None


def _input_rows(counters: dict, max_bad_share: float) -> dict:
    """Per input table: rows read = rows used + rows dead-lettered; refuses the run above `max_bad_share`."""
    rows = {}
    for table in (INTERACTIONS, USERS, ITEMS):
        read, dead = counters.get(f"rows_read_{table}", 0), counters.get(f"rows_dead_{table}", 0)
        rows[table] = {"read": read, "used": read - dead, "dead_lettered": dead}
        if read and dead / read > max_bad_share:
            prefix = f"dead_{table}_"
            reasons = ", ".join(
                f"{k.removeprefix(prefix)}: {v}" for k, v in sorted(counters.items()) if k.startswith(prefix)
            )
            raise DataError(
                f"{dead} of {read} {table} rows ({dead / read:.1%}) are invalid ({reasons}), above --max-bad-share "
                f"{max_bad_share:.1%}; nothing was published. Fix the input, or raise --max-bad-share"
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    try:
        manifest = run(argv)
    except (ValueError, DataError) as error:
        print(f"batch_recommend: error: {error}", file=sys.stderr)
        return 2
    print(f"run {manifest['run_id']}: {manifest['row_counts']}; counters {manifest['counters']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
