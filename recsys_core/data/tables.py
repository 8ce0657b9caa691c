"""The canonical tables every data source yields, and their Arrow schemas.

Column names and dtypes are those of TFDS `movielens/100k-ratings`, split into
three tables so that users and items can be scored without interactions:

- `ratings`: one row per interaction (`user_id`, `movie_id`, `user_rating`, `timestamp`);
- `users`: one row per user with the demographic features;
- `items`: one row per movie with its title and genre ids.

`InteractionData.examples()` joins them into the canonical example.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

RATINGS_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("movie_id", pa.string()),
        ("user_rating", pa.float32()),
        ("timestamp", pa.int64()),
    ]
)
USERS_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("user_gender", pa.bool_()),
        ("raw_user_age", pa.float32()),
        ("bucketized_user_age", pa.float32()),
        ("user_occupation_label", pa.int64()),
        ("user_occupation_text", pa.string()),
        ("user_zip_code", pa.string()),
    ]
)
ITEMS_SCHEMA = pa.schema(
    [
        ("movie_id", pa.string()),
        ("movie_title", pa.string()),
        ("movie_genres", pa.list_(pa.int64())),
    ]
)

# Label names of TFDS `movielens/*-ratings` (its ClassLabel features), so that
# ids from GroupLens files, Parquet tables and TFDS mean the same thing.
GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "Unknown", "War", "Western", "(no genres listed)",
)  # fmt: skip
OCCUPATIONS = (
    "academic/educator", "artist", "clerical/admin", "customer service", "doctor/health care",
    "entertainment", "executive/managerial", "farmer", "homemaker", "lawyer", "librarian",
    "other/not specified", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "student", "technician/engineer", "tradesman/craftsman", "unemployed",
    "writer",
)  # fmt: skip
AGE_BUCKETS = (1, 18, 25, 35, 45, 50, 56)


class DataError(ValueError):
    """Bad input data; the message names the file, line or value and the fix."""


@dataclasses.dataclass(frozen=True)
class InteractionData:
    """Ratings plus the user and item tables they refer to.

    Attributes:
        ratings: table of `RATINGS_SCHEMA`, in the source's order.
        users: table of `USERS_SCHEMA`, one row per user id.
        items: table of `ITEMS_SCHEMA`, one row per movie id.
        lineage: where the data came from (path, format, row counts), for manifests.
    """

    ratings: pa.Table
    users: pa.Table
    items: pa.Table
    lineage: dict

    def __post_init__(self) -> None:
        for name, table, schema in (
            ("ratings", self.ratings, RATINGS_SCHEMA),
            ("users", self.users, USERS_SCHEMA),
            ("items", self.items, ITEMS_SCHEMA),
        ):
            if not table.schema.equals(schema):
                raise DataError(f"{name} table has schema\n{table.schema}\nexpected\n{schema}")
        _check_known("ratings.user_id", self.ratings["user_id"], self.users["user_id"], "users")
        _check_known("ratings.movie_id", self.ratings["movie_id"], self.items["movie_id"], "items")

    def with_ratings(self, ratings: pa.Table) -> InteractionData:
        """The same users and items with a subset of the ratings (a split)."""
        return dataclasses.replace(self, ratings=ratings, lineage={**self.lineage, "num_ratings": ratings.num_rows})

    @functools.cached_property
    def examples(self) -> pa.Table:
        """Canonical examples: ratings joined with user and item features, ratings order kept."""
        user_rows = pc.index_in(self.ratings["user_id"], value_set=self.users["user_id"].combine_chunks())
        item_rows = pc.index_in(self.ratings["movie_id"], value_set=self.items["movie_id"].combine_chunks())
        users = self.users.take(user_rows).drop_columns(["user_id"])
        items = self.items.take(item_rows).drop_columns(["movie_id"])
        columns = {**_columns(self.ratings), **_columns(users), **_columns(items)}
        return pa.table(columns)


def _columns(table: pa.Table) -> dict[str, pa.ChunkedArray]:
    return dict(zip(table.column_names, table.columns, strict=True))


def _check_known(column: str, values: pa.ChunkedArray, known: pa.ChunkedArray, table: str) -> None:
    missing = pc.filter(values, pc.invert(pc.is_in(values, value_set=known.combine_chunks())))
    if len(missing):
        raise DataError(
            f"{column} {missing[0].as_py()!r} (and {len(pc.unique(missing)) - 1} other ids) "
            f"is not in the {table} table; add the missing rows to {table} or drop those ratings"
        )


def group_by_user(ratings: pa.Table, user_ids: pa.Array, item_ids: pa.Array) -> tuple[list, list]:
    """Each user's rated items and rating times, for users in `user_ids` order.

    Args:
        ratings: table with user_id, movie_id and timestamp columns.
        user_ids, item_ids: the users to group by and the items to index into;
            ratings of other users or items are skipped.

    Returns:
        per user, item indices into `item_ids` `[n_u]` and timestamps `[n_u]`,
        oldest first (ties in table order).
    """
    user_rows = _positions(ratings["user_id"], user_ids)
    item_rows = _positions(ratings["movie_id"], item_ids)
    keep = (user_rows >= 0) & (item_rows >= 0)
    user_rows, item_rows, times = user_rows[keep], item_rows[keep], ratings["timestamp"].to_numpy()[keep]
    order = np.lexsort((times, user_rows))
    bounds = np.searchsorted(user_rows[order], np.arange(len(user_ids) + 1))
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    return [item_rows[order[a:b]] for a, b in spans], [times[order[a:b]] for a, b in spans]


def item_counts(ratings: pa.Table, item_ids: pa.Array) -> np.ndarray:
    """`[len(item_ids)]` float32 number of ratings of each item (its popularity)."""
    rows = _positions(ratings["movie_id"], item_ids)
    return np.bincount(rows[rows >= 0], minlength=len(item_ids)).astype(np.float32)


def _positions(values: pa.ChunkedArray, keys: pa.Array) -> np.ndarray:
    """Index of each value in `keys`, -1 where absent."""
    positions = pc.fill_null(pc.index_in(values, value_set=pa.chunked_array([keys]).combine_chunks()), -1)
    return positions.to_numpy().astype(np.int64)


def bucketize_age(age: np.ndarray) -> np.ndarray:
    """MovieLens-1M age buckets (1, 18, 25, ... 56) of raw ages, as TFDS does for 100K."""
    buckets = np.asarray(AGE_BUCKETS, dtype=np.float32)
    positions = np.searchsorted(buckets, np.asarray(age, dtype=np.float32), side="right") - 1
    return buckets[np.clip(positions, 0, None)]
