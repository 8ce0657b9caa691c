"""A user's own Parquet tables: `interactions`, `users` and `items`.

Each table is a Parquet file (`interactions.parquet`) or a directory of them
(`interactions/`) under one root. Columns are mapped onto the canonical tables;
the first name found in each list below is used, and optional columns get the
stated default:

| canonical | accepted column names | default |
|---|---|---|
| user_id | user_id | required |
| movie_id | item_id, movie_id | required |
| user_rating | rating, user_rating | 1.0 (implicit feedback; rating models refuse it) |
| timestamp | timestamp (int seconds or Arrow timestamp) | 0 |
| user_gender | gender, user_gender (bool, or "M"/"F") | False |
| raw_user_age | age, raw_user_age | 0 |
| user_occupation_text | occupation, user_occupation_text | "other/not specified" |
| user_zip_code | zip_code, user_zip_code | "" |
| movie_title | title, movie_title | the item id |
| movie_genres | genres, movie_genres (list of TFDS genre names or ids) | [] |

`users` and `items` may be left out: every id in `interactions` then gets the defaults.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recsys_core.data.tables import (
    GENRES,
    ITEMS_SCHEMA,
    OCCUPATIONS,
    RATINGS_SCHEMA,
    USERS_SCHEMA,
    DataError,
    InteractionData,
    bucketize_age,
)


def read_parquet_tables(root: str) -> InteractionData:
    """Reads `root/interactions[.parquet]` and, if present, `users` and `items`.

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

    user_ids = _column(interactions, "interactions", ("user_id",), None, pa.string())
    item_ids = _column(interactions, "interactions", ("item_id", "movie_id"), None, pa.string())
    implicit = _find(interactions, ("rating", "user_rating")) is None
    ratings = pa.table(
        [
            user_ids,
            item_ids,
            _column(interactions, "interactions", ("rating", "user_rating"), 1.0, pa.float32()),
            _timestamps(interactions),
        ],
        schema=RATINGS_SCHEMA,
    )
    users = users if users is not None else pa.table({"user_id": pc.unique(user_ids)})
    items = items if items is not None else pa.table({"item_id": pc.unique(item_ids)})
    return InteractionData(
        ratings=ratings,
        users=_users_table(users),
        items=_items_table(items),
        lineage={
            "source": "parquet",
            "path": root,
            "num_ratings": ratings.num_rows,
            "implicit": implicit,
        },
    )


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


def _find(table: pa.Table, names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in table.column_names), None)


def _column(table: pa.Table, label: str, names: tuple[str, ...], default, kind: pa.DataType) -> pa.Array:
    name = _find(table, names)
    if name is None:
        if default is None:
            raise DataError(f"{label} table has no {' or '.join(names)} column (columns: {table.column_names})")
        return pa.array([default] * table.num_rows, type=kind)
    column = table[name].combine_chunks()
    if pc.any(pc.is_null(column)).as_py():
        raise DataError(f"{label}.{name} has null values in row {pc.index(pc.is_null(column), True).as_py()}")
    try:
        return column.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise DataError(f"{label}.{name} cannot be read as {kind}: {error}") from error


def _timestamps(table: pa.Table) -> pa.Array:
    if "timestamp" in table.column_names and pa.types.is_timestamp(table["timestamp"].type):
        return pc.cast(table["timestamp"].combine_chunks().cast(pa.timestamp("s")), pa.int64())
    return _column(table, "interactions", ("timestamp",), 0, pa.int64())


def _users_table(users: pa.Table) -> pa.Table:
    name = _find(users, ("gender", "user_gender"))
    if name is not None and pa.types.is_boolean(users[name].type):
        is_male = _column(users, "users", (name,), None, pa.bool_())
    else:
        is_male = pc.equal(pc.utf8_upper(_column(users, "users", ("gender", "user_gender"), "", pa.string())), "M")
    age = _column(users, "users", ("age", "raw_user_age"), 0.0, pa.float32())
    other = "other/not specified"
    occupation = _column(users, "users", ("occupation", "user_occupation_text"), other, pa.string())
    labels = [OCCUPATIONS.index(o if o in OCCUPATIONS else other) for o in occupation.to_pylist()]
    return pa.table(
        [
            _column(users, "users", ("user_id",), None, pa.string()),
            is_male,
            age,
            pa.array(bucketize_age(age.to_numpy(zero_copy_only=False))),
            pa.array(labels, type=pa.int64()),
            occupation,
            _column(users, "users", ("zip_code", "user_zip_code"), "", pa.string()),
        ],
        schema=USERS_SCHEMA,
    )


def _items_table(items: pa.Table) -> pa.Table:
    item_ids = _column(items, "items", ("item_id", "movie_id"), None, pa.string())
    titles = _column(items, "items", ("title", "movie_title"), "", pa.string())
    titles = pc.if_else(pc.equal(titles, ""), item_ids, titles)
    name = _find(items, ("genres", "movie_genres"))
    genres = [_genre_ids(g, name) for g in items[name].to_pylist()] if name else [[]] * items.num_rows
    return pa.table([item_ids, titles, pa.array(genres, type=pa.list_(pa.int64()))], schema=ITEMS_SCHEMA)


def _genre_ids(genres: list | None, column: str) -> list[int]:
    ids = []
    for genre in genres or []:
        if isinstance(genre, (int, np.integer)) and 0 <= genre < len(GENRES):
            ids.append(int(genre))
        elif genre in GENRES:
            ids.append(GENRES.index(genre))
        else:
            raise DataError(f"items.{column} has unknown genre {genre!r}; known genres: {', '.join(GENRES)}")
    return ids
