"""TFDS `movielens/*-ratings` (downloads on first use; needs internet)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_core.data.movielens import GENRES, movielens_schema
from recsys_core.data.tables import RATINGS_SCHEMA, DataError, InteractionData
from recsys_core.schema import ITEM_ID, RATING, USER_ID


def read_tfds(name: str, data_dir: str | None = None) -> InteractionData:
    """Loads a TFDS MovieLens ratings config into the canonical tables.

    Args:
        name: e.g. `movielens/100k-ratings` or `movielens/1m-ratings`.
        data_dir: TFDS data directory; None for TFDS's default.
    """
    import tensorflow_datasets as tfds

    if not name.startswith("movielens/") or not name.endswith("-ratings"):
        raise DataError(f"TFDS dataset {name!r} is not a MovieLens ratings config (movielens/<version>-ratings)")
    try:
        dataset = tfds.load(name, split="train", data_dir=data_dir)
    except Exception as error:  # tfds raises many types for a failed download
        raise DataError(
            f"could not load TFDS {name}: {error}. Without internet, use --data-source grouplens "
            "with the GroupLens files instead"
        ) from error
    columns = {key: [] for key in dataset.element_spec}
    for batch in dataset.ragged_batch(65_536).as_numpy_iterator():
        for key, values in batch.items():
            columns[key].append(_genre_lists(values) if key == "movie_genres" else values)
    flat = {key: _concat(parts) for key, parts in columns.items()}
    if "raw_user_age" not in flat:  # 1m-ratings has age buckets only
        flat["raw_user_age"] = flat["bucketized_user_age"]
    renamed = {"movie_id": ITEM_ID, "user_rating": RATING}
    table = pa.table({renamed.get(key, key): _arrow(key, values) for key, values in flat.items()})
    ratings = table.select(RATINGS_SCHEMA.names).cast(RATINGS_SCHEMA)
    schema = movielens_schema()
    return InteractionData(
        ratings=ratings,
        users=_first_rows(table, USER_ID, schema.table_schema("user")),
        items=_first_rows(table, ITEM_ID, schema.table_schema("item")),
        schema=schema,
        lineage={"source": "tfds", "name": name, "num_ratings": ratings.num_rows},
    )


def _genre_lists(values) -> list[list[int]]:
    """Genre lists of a ragged batch, whichever numpy form it came back in."""
    return values.to_list() if hasattr(values, "to_list") else [list(genres) for genres in values]


def _concat(parts: list) -> list | np.ndarray:
    if parts and isinstance(parts[0], np.ndarray) and parts[0].dtype != object:
        return np.concatenate(parts)
    return [value for part in parts for value in part]


def _arrow(key: str, values) -> pa.Array:
    if key == "movie_genres":  # TFDS ClassLabel ids -> the genre names of the schema
        return pa.array([[GENRES[int(g)] for g in genres] for genres in values], type=pa.list_(pa.string()))
    if key == "bucketized_user_age":  # float32 bucket starts in TFDS; int64 categories in the schema
        return pa.array(np.asarray(values).astype(np.int64))
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return pa.array(values)
    return pa.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in values], type=pa.string())


def _first_rows(table: pa.Table, key: str, schema: pa.Schema) -> pa.Table:
    """One row per distinct `key`, taken from its first occurrence."""
    keys = table[key].combine_chunks()
    unique = pc.unique(keys)
    first = pc.index_in(unique, value_set=keys)
    return table.take(first).select(schema.names).cast(schema)
