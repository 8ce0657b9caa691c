"""The tables every data source yields: interactions, users and items, checked against a feature schema.

- `ratings`: one row per interaction (`user_id`, `item_id`, `rating`, `timestamp`);
- `users`: one row per user: `user_id` and the schema's user features;
- `items`: one row per item: `item_id` and the schema's item features.

`InteractionData.examples` joins them into one training example per interaction;
`InteractionData.column` gives one column of that join without the others.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_core.schema import INTERACTIONS_SCHEMA, ITEM_ID, USER_ID, FeatureSchema, SchemaError

RATINGS_SCHEMA = INTERACTIONS_SCHEMA


class DataError(ValueError):
    """Bad input data; the message names the file, line or value and the fix."""


@dataclasses.dataclass(frozen=True)
class InteractionData:
    """Interactions plus the user and item tables they refer to, and the schema of those tables.

    Attributes:
        ratings: table of `RATINGS_SCHEMA`, in the source's order (rating 1.0 for implicit feedback).
        users: table of `schema.table_schema("user")`, one row per user id.
        items: table of `schema.table_schema("item")`, one row per item id.
        schema: the feature schema the users and items tables follow.
        lineage: where the data came from (path, format, row counts), for manifests.
    """

    ratings: pa.Table
    users: pa.Table
    items: pa.Table
    schema: FeatureSchema
    lineage: dict

    def __post_init__(self) -> None:
        for name, table, expected in (
            ("ratings", self.ratings, RATINGS_SCHEMA),
            ("users", self.users, self.schema.table_schema("user")),
            ("items", self.items, self.schema.table_schema("item")),
        ):
            if not table.schema.equals(expected):
                raise SchemaError(
                    f"{name} table has schema\n{table.schema}\nbut {self.schema.describe()} declares\n{expected}"
                )
        check_known("ratings.user_id", self.ratings[USER_ID], self.users[USER_ID], "users")
        check_known("ratings.item_id", self.ratings[ITEM_ID], self.items[ITEM_ID], "items")

    def with_ratings(self, ratings: pa.Table) -> InteractionData:
        """The same users and items with a subset of the ratings (a split)."""
        return dataclasses.replace(self, ratings=ratings, lineage={**self.lineage, "num_ratings": ratings.num_rows})

    def conform(self, schema: FeatureSchema) -> InteractionData:
        """These tables with the columns of `schema` (e.g. a bundle's): a subset of this data's own features.

        Raises:
            SchemaError: a feature `schema` declares is missing here or has another type.
        """
        tables = {}
        for entity, table in (("user", self.users), ("item", self.items)):
            expected = schema.table_schema(entity)
            for field in expected:
                if field.name not in table.column_names or table.schema.field(field.name).type != field.type:
                    found = table.schema.field(field.name).type if field.name in table.column_names else "no column"
                    raise SchemaError(
                        f"{entity}s table column {field.name!r}: {schema.describe()} declares {field.type}, "
                        f"the {self.schema.describe()} data has {found}"
                    )
            tables[entity] = table.select(expected.names)
        return dataclasses.replace(self, users=tables["user"], items=tables["item"], schema=schema)

    @property
    def examples(self) -> pa.Table:
        """One row per interaction with its user's and item's features, ratings order kept (built anew by
        each call: a whole split's join is large; see `column`)."""
        names = self.ratings.column_names + self.users.column_names[1:] + self.items.column_names[1:]
        return pa.table({name: self.column(name) for name in names})

    def column(self, name: str) -> pa.ChunkedArray:
        """One column of `examples`, `[ratings]`: a ratings column, or a user or item feature of each rating."""
        if name in self.ratings.column_names:
            return self.ratings[name]
        table, key = (self.users, USER_ID) if name in self.users.column_names else (self.items, ITEM_ID)
        return table[name].take(self._rows[key])

    @functools.cached_property
    def _rows(self) -> dict[str, pa.Array]:
        """`{user_id: row in users, item_id: row in items}` of each rating."""
        return {
            key: pc.index_in(self.ratings[key], value_set=table[key].combine_chunks())
            for key, table in ((USER_ID, self.users), (ITEM_ID, self.items))
        }


def joined(parts: list[InteractionData]) -> InteractionData:
    """The ratings of `parts` (splits of one data set) as one."""
    return parts[0].with_ratings(pa.concat_tables([part.ratings for part in parts]))


def check_known(column: str, values: pa.ChunkedArray, known: pa.ChunkedArray, table: str) -> None:
    missing = pc.filter(values, pc.invert(pc.is_in(values, value_set=known.combine_chunks())))
    if len(missing):
        raise DataError(
            f"{column} {missing[0].as_py()!r} (and {len(pc.unique(missing)) - 1} other ids) "
            f"is not in the {table} table; add the missing rows to {table} or drop those ratings"
        )


def group_by_user(ratings: pa.Table, user_ids: pa.Array, item_ids: pa.Array) -> tuple[list, list]:
    """Each user's rated items and rating times, for users in `user_ids` order.

    Args:
        ratings: table with user_id, item_id and timestamp columns.
        user_ids, item_ids: the users to group by and the items to index into;
            ratings of other users or items are skipped.

    Returns:
        per user, item indices into `item_ids` `[n_u]` and timestamps `[n_u]`,
        oldest first; ties by item id, so that the order does not depend on the
        order rows arrive in (the job reads them from many files at once).
    """
    user_rows = positions(ratings["user_id"], user_ids)
    item_rows = positions(ratings[ITEM_ID], item_ids)
    keep = (user_rows >= 0) & (item_rows >= 0)
    user_rows, item_rows, times = user_rows[keep], item_rows[keep], ratings["timestamp"].to_numpy()[keep]
    id_rank = np.empty(len(item_ids), np.int64)
    id_rank[pc.sort_indices(one_array(item_ids)).to_numpy()] = np.arange(len(item_ids))
    order = np.lexsort((id_rank[item_rows], times, user_rows))
    bounds = np.searchsorted(user_rows[order], np.arange(len(user_ids) + 1))
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    return [item_rows[order[a:b]] for a, b in spans], [times[order[a:b]] for a, b in spans]


def item_counts(ratings: pa.Table, item_ids: pa.Array) -> np.ndarray:
    """`[len(item_ids)]` float32 number of ratings of each item (its popularity)."""
    rows = positions(ratings[ITEM_ID], item_ids)
    return np.bincount(rows[rows >= 0], minlength=len(item_ids)).astype(np.float32)


def one_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as one contiguous array. (`pa.chunked_array([column])` would copy a ChunkedArray value by
    value through Python: 15 ms for 20 000 ids, per call.)"""
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def positions(values: pa.ChunkedArray, keys: pa.Array) -> np.ndarray:
    """Index of each value in `keys`, -1 where absent."""
    positions = pc.fill_null(pc.index_in(values, value_set=one_array(keys)), -1)
    return positions.to_numpy().astype(np.int64)


def timestamps_as_seconds(column: pa.Array) -> pa.Array:
    """An Arrow timestamp column as int64 seconds (how the tables store times); other columns as they are."""
    if pa.types.is_timestamp(column.type):
        return pc.cast(column, pa.timestamp("s"), safe=False).cast(pa.int64())
    return column
