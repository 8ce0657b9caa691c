"""A user's own Parquet tables, `interactions`, `users` and `items`, read as a feature schema declares them.

Each table is a Parquet file (`interactions.parquet`) or a directory of them
(`interactions/`) under one root:

| table | columns |
|---|---|
| interactions | `user_id`, `item_id`, `rating` (1.0 if absent: implicit feedback), `timestamp` (0 if absent) |
| users | `user_id` and every user feature of the schema |
| items | `item_id` and every item feature of the schema |

Timestamps are int seconds or Arrow timestamps. Columns not in the schema are
ignored. A feature column that is missing, or cannot be cast to its declared type, is refused with a message naming the
column and the schema file; nulls take the feature's `default`, and are refused
where it has none. `users` and `items` may be left out when every feature of
theirs has a default.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recsys_core.data.tables import RATINGS_SCHEMA, DataError, InteractionData
from recsys_core.schema import ITEM_ID, RATING, TIMESTAMP, USER_ID, Feature, FeatureSchema
from recsys_core.validation import timestamps_as_seconds


def read_parquet_tables(root: str, schema: FeatureSchema) -> InteractionData:
    """Reads `root/interactions[.parquet]` and, if present, `users` and `items`, as `schema` declares them.

    `root` is a local directory or a URI pyarrow knows (gs://, s3://, hdfs://).
    """
    if "://" in root:
        filesystem, base = pafs.FileSystem.from_uri(root)
    else:
        root = os.path.abspath(root)
        filesystem, base = pafs.LocalFileSystem(), root
    if filesystem.get_file_info(base).type != pafs.FileType.Directory:
        raise DataError(f"Parquet data directory {root} does not exist; it must hold interactions[.parquet]")
    interactions = _read(filesystem, base, "interactions", required=True)
    users = _read(filesystem, base, "users", required=False)
    items = _read(filesystem, base, "items", required=False)

    implicit = RATING not in interactions.column_names
    if implicit and schema.rating:
        raise DataError(
            f"interactions table in {root} has no {RATING!r} column, but {schema.describe()} declares "
            '"rating": true; add the column, or for implicit feedback set "rating": false (ids only: --schema implicit)'
        )
    user_ids = _column(interactions, "interactions", _Key(USER_ID), schema)
    item_ids = _column(interactions, "interactions", _Key(ITEM_ID), schema)
    ratings = pa.table(
        [
            user_ids,
            item_ids,
            _column(interactions, "interactions", _Key(RATING, pa.float32(), 1.0), schema),
            _column(interactions, "interactions", _Key(TIMESTAMP, pa.int64(), 0), schema),
        ],
        schema=RATINGS_SCHEMA,
    )
    users = users if users is not None else pa.table({USER_ID: pc.unique(user_ids)})
    items = items if items is not None else pa.table({ITEM_ID: pc.unique(item_ids)})
    return InteractionData(
        ratings=ratings,
        users=_feature_table(users, "users", USER_ID, schema.of("user"), schema),
        items=_feature_table(items, "items", ITEM_ID, schema.of("item"), schema),
        schema=schema,
        lineage={"source": "parquet", "path": root, "num_ratings": ratings.num_rows, "implicit": implicit},
    )


class _Key:
    """A fixed column (ids, rating, timestamp), read like a feature."""

    def __init__(self, name: str, kind: pa.DataType = pa.string(), default=None) -> None:
        self.name, self.kind, self.default = name, kind, default

    def arrow_type(self) -> pa.DataType:
        return self.kind


def _read(filesystem: pafs.FileSystem, root: str, name: str, required: bool) -> pa.Table | None:
    for path in (f"{root}/{name}", f"{root}/{name}.parquet"):
        if filesystem.get_file_info(path).type != pafs.FileType.NotFound:
            try:
                return pq.read_table(path, filesystem=filesystem)
            except (pa.ArrowException, OSError) as error:
                raise DataError(f"cannot read Parquet table {path}: {error}") from error
    if required:
        raise DataError(f"{root} has no {name} table: write it as {name}.parquet or a {name}/ directory")
    return None


def _feature_table(
    table: pa.Table, label: str, key: str, features: tuple[Feature, ...], schema: FeatureSchema
) -> pa.Table:
    columns = [_column(table, label, _Key(key), schema)] + [_column(table, label, f, schema) for f in features]
    return pa.table(columns, names=[key] + [f.name for f in features])


def _column(table: pa.Table, label: str, feature: Feature | _Key, schema: FeatureSchema) -> pa.Array:
    """The column of `feature`, cast to its declared type, nulls filled with its default."""
    kind = feature.arrow_type()
    if feature.name not in table.column_names:
        if feature.default is None:
            raise DataError(
                f"{label} table has no column {feature.name!r}, which {schema.describe()} declares; "
                f"add it, give the feature a default, or remove it from the schema (columns: {table.column_names})"
            )
        return pa.array([feature.default] * table.num_rows, type=kind)
    column = table[feature.name].combine_chunks()
    column = timestamps_as_seconds(column)
    try:
        column = column.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise DataError(
            f"{label}.{feature.name} is {column.type}, which cannot be read as the {kind} that "
            f"{schema.describe()} declares: {error}"
        ) from error
    if column.null_count:
        if feature.default is None:
            row = pc.index(pc.is_null(column), True).as_py()
            raise DataError(
                f"{label}.{feature.name} is null in row {row} ({column.null_count} rows); fill it, or give the "
                f"feature a default in {schema.describe()}"
            )
        column = pc.fill_null(column, pa.scalar(feature.default, kind))
    return column
