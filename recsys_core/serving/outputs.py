"""The job's output tables: their Arrow schemas (defined here only), the functions that build them, and
how a consumer reads what was published.

A run writes each table's files under `<table>/dt=<date>/v=<version>/` and then
one pointer, `_published/dt=<date>.json` (and `_published/latest.json`), that
names them (`jobs/publish.py`). Read through the pointer (`read_published`): a
directory listing may include a run in flight or one being replaced.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs

from recsys_core.bundle import absolute
from recsys_core.serving.validation import DEAD_LETTER_SCHEMA

SCHEMA_VERSION = 3  # 3: versioned partitions behind a pointer file
RECOMMENDATIONS = "recommendations"
USER_EMBEDDINGS = "user_embeddings"
ITEM_EMBEDDINGS = "item_embeddings"
SIMILAR_ITEMS = "similar_items"
DEAD_LETTER = "dead_letter"  # input rows that failed validation (`recsys_core.serving.validation`)
TABLES = (RECOMMENDATIONS, USER_EMBEDDINGS, ITEM_EMBEDDINGS, SIMILAR_ITEMS)
PUBLISHED = TABLES + (DEAD_LETTER,)
PUBLISHED_DIR = "_published"
LATEST_POINTER = "latest.json"

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
    DEAD_LETTER: DEAD_LETTER_SCHEMA,
}


def recommendations_table(
    user_ids, ranks, item_ids, retrieval_scores, ranking_scores, scores, sources, model_version: str, run_id: str
) -> pa.Table:
    """Rows of `RECOMMENDATIONS_SCHEMA`: ids and `sources` as Arrow string arrays, the rest numpy `[rows]`."""
    n = len(ranks)
    return pa.table(
        [
            user_ids,
            pa.array(ranks, pa.int32()),
            item_ids,
            pa.array(retrieval_scores, pa.float32()),
            pa.array(ranking_scores, pa.float32(), from_pandas=True),  # NaN -> null
            pa.array(scores, pa.float32()),
            sources,
            pa.repeat(pa.scalar(model_version, pa.string()), n),
            pa.repeat(pa.scalar(run_id, pa.string()), n),
        ],
        schema=RECOMMENDATIONS_SCHEMA,
    )


def embeddings_table(schema: pa.Schema, ids, embeddings: np.ndarray, model_version: str) -> pa.Table:
    """`[rows, dim]` float32 embeddings as a list<float32> column."""
    flat = pa.array(np.ascontiguousarray(embeddings, np.float32).ravel())
    column = pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1]).cast(pa.list_(pa.float32()))
    return pa.table([ids, column, pa.repeat(pa.scalar(model_version, pa.string()), len(embeddings))], schema=schema)


def similar_items_table(item_ids, ranks, similar_ids, scores, model_version: str) -> pa.Table:
    return pa.table(
        [
            item_ids,
            pa.array(ranks, pa.int32()),
            similar_ids,
            pa.array(scores, pa.float32()),
            pa.repeat(pa.scalar(model_version, pa.string()), len(ranks)),
        ],
        schema=SIMILAR_ITEMS_SCHEMA,
    )


def pointer_path(root: str, run_date: str) -> str:
    return f"{root.rstrip('/')}/{PUBLISHED_DIR}/dt={run_date}.json"


def read_pointer(root: str, run_date: str | None = None) -> dict:
    """The published pointer of `run_date` (default: the latest date), local path or URI (`gs://...`).

    Raises:
        FileNotFoundError: nothing is published for that date.
    """
    path = pointer_path(root, run_date) if run_date else f"{root.rstrip('/')}/{PUBLISHED_DIR}/{LATEST_POINTER}"
    filesystem, inner = pyarrow.fs.FileSystem.from_uri(absolute(path))
    with filesystem.open_input_stream(inner) as handle:
        return json.loads(handle.read())


def published_files(root: str, table: str, run_date: str | None = None) -> list[str]:
    """The files of `table` in the run published for `run_date` (default: the latest)."""
    return [f"{root.rstrip('/')}/{path}" for path in read_pointer(root, run_date)["files"][table]]


def read_published(root: str, table: str, run_date: str | None = None) -> pa.Table:
    """`table` as published for `run_date` (default: the latest date): exactly one complete run's rows."""
    return files_dataset(root, read_pointer(root, run_date)["files"][table], SCHEMAS[table]).to_table()


def files_dataset(root: str, paths: list[str], schema: pa.Schema | None = None) -> ds.Dataset:
    """The Parquet files `paths` (relative to `root`, a local path or a URI) as one pyarrow dataset."""
    filesystem, base = pyarrow.fs.FileSystem.from_uri(absolute(root))
    return ds.dataset([f"{base}/{path}" for path in paths], schema=schema, format="parquet", filesystem=filesystem)
