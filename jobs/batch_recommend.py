"""Nightly batch recommendations: bundle + interactions -> Parquet tables for one run date.

    python -m jobs.batch_recommend --bundle runs --output output --run-date 2026-11-22 \
        [--data-source grouplens --data-path ../shared/data/ml-100k] [--top-k 100 --final-k 20] \
        [--reranker auto|ranking|dlrm|dcn|multitask|none] [--blend-weight W]
        [Beam options: --runner, --direct_num_workers, ...]

Writes `recommendations`, `user_embeddings`, `item_embeddings` and `similar_items`
under `--output`, each partitioned by `dt=<run date>`, with `_manifest.json` and
`_SUCCESS` in every partition.
"""

from __future__ import annotations

import sys
import time

import recsys_core  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

# isort: split
import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter

from jobs.inputs import stage_inputs
from jobs.options import JobSettings, RecommendOptions, validate
from jobs.transforms import (
    NAMESPACE,
    EmbedItems,
    ItemEmbeddings,
    ReadUserBlocks,
    RecommendUsers,
    SimilarItems,
    WriteTable,
)
from recsys_core import outputs
from recsys_core.console import configure_logging
from recsys_core.data import DataError, load_data
from recsys_core.export import bundle_schema
from recsys_core.recommend import RecommendSettings


def build_pipeline(pipeline: beam.Pipeline, settings: JobSettings, items_path: str, block_paths: list[str]) -> None:
    """Wires the job over staged inputs: embed items / users -> top-K unseen -> re-rank -> write four tables."""
    version = settings.manifest["bundle_version"]
    recommend = RecommendSettings(
        top_k=settings.top_k,
        final_k=settings.final_k,
        reranker=settings.reranker,
        timestamp=settings.timestamp,
        run_id=settings.run_id,
        blend_weight=settings.blend_weight,
        popularity_weight=settings.popularity_weight,
    )

    def prefix(table: str) -> str:
        return outputs.staging_prefix(settings.output, settings.run_id, table, settings.run_date)

    index = pipeline | "EmbedItems" >> EmbedItems(settings.bundle, items_path)
    blocks = pipeline | "ReadUsers" >> ReadUserBlocks(block_paths)
    scored = blocks | "RecommendUsers" >> RecommendUsers(settings.bundle, recommend, index)
    scored[outputs.RECOMMENDATIONS] | "WriteRecommendations" >> WriteTable(
        outputs.RECOMMENDATIONS, prefix(outputs.RECOMMENDATIONS)
    )
    scored[outputs.USER_EMBEDDINGS] | "WriteUserEmbeddings" >> WriteTable(
        outputs.USER_EMBEDDINGS, prefix(outputs.USER_EMBEDDINGS)
    )
    (
        index
        | "ItemEmbeddings" >> ItemEmbeddings(version)
        | "WriteItemEmbeddings" >> WriteTable(outputs.ITEM_EMBEDDINGS, prefix(outputs.ITEM_EMBEDDINGS))
    )
    (
        index
        | "SimilarItems" >> SimilarItems(settings.similar_k, version)
        | "WriteSimilarItems" >> WriteTable(outputs.SIMILAR_ITEMS, prefix(outputs.SIMILAR_ITEMS))
    )


def run(argv: list[str] | None = None) -> dict:
    """Validates options, reads the data, runs the pipeline, publishes the partitions; returns the manifest."""
    options = RecommendOptions(argv)
    settings = validate(options)
    started = time.perf_counter()
    data = load_data(settings.data, schema=bundle_schema(settings.manifest))
    staging = FileSystems.join(settings.output, "_staging", settings.run_id)
    try:
        items_path, block_paths = stage_inputs(data, FileSystems.join(staging, "input"), settings.block_size)
        loaded = time.perf_counter()
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, settings, items_path, block_paths)
        result = pipeline.run()
        result.wait_until_finish()
    except BaseException:
        FileSystems.delete([staging])  # a failed run leaves nothing behind
        raise
    finished = time.perf_counter()
    counters = {
        c.key.metric.name: c.committed if c.committed is not None else c.attempted
        for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    }
    manifest = {
        "schema_version": outputs.SCHEMA_VERSION,
        "run_id": settings.run_id,
        "run_date": settings.run_date,
        "tables": {name: {"schema": str(schema)} for name, schema in outputs.SCHEMAS.items()},
        "row_counts": {name: counters.get(f"rows_written_{name}", 0) for name in outputs.TABLES},
        "user_count": data.users.num_rows,
        "item_count": data.items.num_rows,
        "model": {"bundle": settings.bundle, "bundle_version": settings.manifest["bundle_version"]},
        "data_lineage": data.lineage,
        "parameters": {
            "top_k": settings.top_k,
            "final_k": settings.final_k,
            "reranker": settings.reranker,
            "blend_weight": settings.blend_weight,
            "popularity_weight": settings.popularity_weight,
            "run_date_timestamp": settings.timestamp,
            "query_policy": settings.manifest.get("query_policy"),
        },
        "timings_seconds": {"read_and_stage_data": loaded - started, "pipeline": finished - loaded},
        "counters": counters,
        "runner": type(pipeline.runner).__name__,
    }
    outputs.publish(settings.output, settings.run_id, settings.run_date, manifest)
    return manifest


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
