"""The job's output tables: Arrow schemas (defined here only) and how a run's partition is published.

Each table is Hive-partitioned by run date, e.g. `recommendations/dt=2026-11-22/`.
A run writes into `_staging/<run_id>/` (ignored by Parquet readers, whose
defaults skip `_`-prefixed paths), then moves each finished partition into
place, writes `_manifest.json` into it and `_SUCCESS` last.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

SCHEMA_VERSION = 2
RECOMMENDATIONS = "recommendations"
USER_EMBEDDINGS = "user_embeddings"
ITEM_EMBEDDINGS = "item_embeddings"
SIMILAR_ITEMS = "similar_items"
TABLES = (RECOMMENDATIONS, USER_EMBEDDINGS, ITEM_EMBEDDINGS, SIMILAR_ITEMS)
MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"

RECOMMENDATIONS_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("rank", pa.int32()),  # 1..final_k, best first
        ("item_id", pa.string()),
        ("retrieval_score", pa.float32()),  # two-tower dot product (fallback: item popularity)
        ("ranking_score", pa.float32()),  # re-ranker's predicted rating; null without one
        ("score", pa.float32()),  # what the list is ordered by: the blend of standardised scores
        ("source", pa.string()),  # "model" or "popularity_fallback"
        ("model_version", pa.string()),
        ("run_id", pa.string()),
    ]
)
USER_EMBEDDINGS_SCHEMA = pa.schema(
    [("user_id", pa.string()), ("embedding", pa.list_(pa.float32())), ("model_version", pa.string())]
)
ITEM_EMBEDDINGS_SCHEMA = pa.schema(
    [("item_id", pa.string()), ("embedding", pa.list_(pa.float32())), ("model_version", pa.string())]
)
SIMILAR_ITEMS_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("rank", pa.int32()),
        ("similar_item_id", pa.string()),
        ("score", pa.float32()),  # cosine similarity of candidate-tower embeddings
        ("model_version", pa.string()),
    ]
)
SCHEMAS = {
    RECOMMENDATIONS: RECOMMENDATIONS_SCHEMA,
    USER_EMBEDDINGS: USER_EMBEDDINGS_SCHEMA,
    ITEM_EMBEDDINGS: ITEM_EMBEDDINGS_SCHEMA,
    SIMILAR_ITEMS: SIMILAR_ITEMS_SCHEMA,
}


def recommendations_table(
    user_ids, ranks, item_ids, retrieval_scores, ranking_scores, scores, sources, model_version: str, run_id: str
) -> pa.Table:
    n = len(ranks)
    return pa.table(
        [
            user_ids,
            pa.array(ranks, pa.int32()),
            item_ids,
            pa.array(retrieval_scores, pa.float32()),
            pa.array(ranking_scores, pa.float32(), from_pandas=True),  # NaN -> null
            pa.array(scores, pa.float32()),
            pa.array(sources, pa.string()),
            pa.array([model_version] * n, pa.string()),
            pa.array([run_id] * n, pa.string()),
        ],
        schema=RECOMMENDATIONS_SCHEMA,
    )


def embeddings_table(schema: pa.Schema, ids, embeddings: np.ndarray, model_version: str) -> pa.Table:
    """`[rows, dim]` float32 embeddings as a list<float32> column."""
    flat = pa.array(np.ascontiguousarray(embeddings, np.float32).ravel())
    column = pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1]).cast(pa.list_(pa.float32()))
    return pa.table([ids, column, pa.array([model_version] * len(embeddings), pa.string())], schema=schema)


def similar_items_table(item_ids, ranks, similar_ids, scores, model_version: str) -> pa.Table:
    return pa.table(
        [
            item_ids,
            pa.array(ranks, pa.int32()),
            similar_ids,
            pa.array(scores, pa.float32()),
            pa.array([model_version] * len(ranks), pa.string()),
        ],
        schema=SIMILAR_ITEMS_SCHEMA,
    )


def partition(root: str, table: str, run_date: str) -> str:
    return FileSystems.join(root, table, f"dt={run_date}")


def staging_prefix(root: str, run_id: str, table: str, run_date: str) -> str:
    """Where the pipeline writes a table's files before they are published."""
    return FileSystems.join(partition(FileSystems.join(root, "_staging", run_id), table, run_date), "part")


def publish(root: str, run_id: str, run_date: str, manifest: dict) -> None:
    """Moves the staged partitions into place (replacing an older run of the same date) and marks them done."""
    staging = FileSystems.join(root, "_staging", run_id)
    for table in TABLES:
        source, target = partition(staging, table, run_date), partition(root, table, run_date)
        if FileSystems.exists(target):
            FileSystems.delete([target])
        if not FileSystems.exists(FileSystems.join(root, table)):
            FileSystems.mkdirs(FileSystems.join(root, table))
        FileSystems.rename([source], [target])
    for table in TABLES:
        target = partition(root, table, run_date)
        _write(FileSystems.join(target, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True, default=str))
    for table in TABLES:
        _write(FileSystems.join(partition(root, table, run_date), SUCCESS), "")
    FileSystems.delete([staging])


def _write(path: str, text: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(text.encode())
