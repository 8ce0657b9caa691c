"""Row validation of the job's inputs against the bundle's feature schema, with dead letters instead of refusals.

Beam-free: the job's workers call these on batches of rows. A row that fails a
check leaves its table as a dead-letter row (`DEAD_LETTER_SCHEMA`: the table, a
reason code, the column, the offending value and the source file) and the other
rows go on. Checks that need one row only are in `check_rows`; those that need
the other rows of the same user (duplicates, unknown ids) are in `group_users`.

Reason codes:

| reason | meaning |
|---|---|
| `null` | a required value is null or an empty id |
| `nan` | a number is NaN or infinite |
| `out_of_range` | a rating outside the schema's `rating_range`, a numeric feature outside its `valid_range` |
| `timestamp_out_of_window` | an interaction timestamp before 1970-01-01 or after the run date |
| `not_utf8` | a text value that is not valid UTF-8 |
| `not_convertible` | a value that cannot be read as its column's declared type ("four" for a rating) |
| `unreadable_file` | an input file not read: empty, not Parquet, or of types that never convert (`RefusedFile`) |
| `unknown_item` | an interaction naming an item the items table does not have |
| `unknown_user` | an interaction naming a user the users table does not have |
| `duplicate_event` | the same (user, item, timestamp) again: one is kept |
| `duplicate_user`, `duplicate_item` | an id twice in the users or items table: one is kept (`keep_one_per_id`) |
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_core.data.columns import decoded, read_column
from recsys_core.data.tables import one_array
from recsys_core.schema import INTERACTIONS_SCHEMA, ITEM_ID, RATING, TIMESTAMP, USER_ID, FeatureSchema

INTERACTIONS, USERS, ITEMS = "interactions", "users", "items"
SHOWN_CHARACTERS = 200  # a dead letter's value is cut to this many characters
DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("table", pa.string()),
        ("reason", pa.string()),
        ("column", pa.string()),
        ("value", pa.string()),
        ("source_file", pa.string()),
    ]
)


@dataclasses.dataclass(frozen=True)
class Rules:
    """What a valid row is, besides its schema types.

    Attributes:
        schema: the bundle's feature schema.
        latest_timestamp: the end of the run date (seconds); later interactions are implausible.
    """

    schema: FeatureSchema
    latest_timestamp: int

    def table_schema(self, table: str) -> pa.Schema:
        if table == INTERACTIONS:
            return INTERACTIONS_SCHEMA
        return self.schema.table_schema("user" if table == USERS else "item")


def dead_letters(table: str, reason: str, column: str, values, sources) -> pa.Table:
    """Dead-letter rows for the offending `values` (any Arrow array; shown as text).

    `sources` is one file name for all of them, or one per value.
    """
    shown = [_show(v) for v in pa.array(values).to_pylist()] if len(values) else []
    n = len(shown)
    sources = [sources] * n if isinstance(sources, str) else sources
    return pa.table([[table] * n, [reason] * n, [column] * n, shown, sources], schema=DEAD_LETTER_SCHEMA)


def _show(value) -> str:
    """A value as text, cut to `SHOWN_CHARACTERS`."""
    shown = repr(value) if isinstance(value, bytes) else str(value)
    return shown if len(shown) <= SHOWN_CHARACTERS else shown[: SHOWN_CHARACTERS - 1] + "…"


def check_rows(rows: pa.Table, table: str, rules: Rules, source: str) -> tuple[pa.Table, pa.Table]:
    """Checks each row of a batch read from `source` on its own; returns `(valid rows, dead letters)`.

    The valid rows are cast to the table's schema (`Rules.table_schema`), nulls
    filled with the features' defaults; columns the schema does not declare are dropped.

    Raises:
        ValueError: a column is missing or cannot be read as its declared type: the
            whole input is wrong, not a row (the launcher checks this up front).
    """
    expected = rules.table_schema(table)
    columns, dead, keep = {}, [], np.ones(rows.num_rows, bool)
    for field in expected:
        column, default, not_converted = _column(rows, table, field, rules, source)
        bad = {}
        if not_converted is not None:
            bad["not_convertible"] = not_converted
        if pa.types.is_string(field.type) or pa.types.is_list(field.type):
            if field.name in rows.column_names:
                bad["not_utf8"] = pa.array(_invalid_utf8(rows[field.name]))
        if default is None:
            bad["null"] = pc.is_null(column)
        if pa.types.is_string(field.type) and field.name in (USER_ID, ITEM_ID):
            bad["null"] = pc.or_kleene(pc.is_null(column), pc.equal(column, ""))
        if pa.types.is_floating(field.type):
            bad["nan"] = pc.invert(pc.is_finite(column))
        low_high = _range(field.name, table, rules)
        if low_high is not None:
            bad["out_of_range"] = pc.or_kleene(pc.less(column, low_high[0]), pc.greater(column, low_high[1]))
        if table == INTERACTIONS and field.name == TIMESTAMP:
            outside = pc.or_kleene(pc.less(column, 0), pc.greater(column, rules.latest_timestamp))
            bad["timestamp_out_of_window"] = outside
        for reason, mask in bad.items():
            mask = pc.fill_null(mask, False).to_numpy(zero_copy_only=False) & keep
            if mask.any():
                shown = column
                if reason in ("not_convertible", "not_utf8"):  # the value as written, text that is not UTF-8 as bytes
                    written = one_array(rows[field.name])
                    shown = written if reason == "not_convertible" else _raw(written)
                dead.append(dead_letters(table, reason, field.name, shown.filter(pa.array(mask)), source))
                keep &= ~mask
        if default is not None:
            column = pc.fill_null(column, pa.scalar(default, field.type))
        columns[field.name] = column
    valid = pa.table([columns[f.name] for f in expected], schema=expected).filter(pa.array(keep))
    return valid, concat_dead(dead)


def _column(
    rows: pa.Table, table: str, field: pa.Field, rules: Rules, source: str
) -> tuple[pa.Array, object, pa.Array | None]:
    """The column cast to its declared type (`columns.read_column`), the default that fills its nulls (None:
    required), and `[rows]` bool marking the values that do not convert (None: all converted).

    Raises:
        DataError: the column is missing, or its type can never be read as the declared one (a list for a
            number): the file is wrong as a whole, not a row.
    """
    default = _default(field.name, table, rules)
    where = f"{table} file {source}"
    read = read_column(rows, field.name, field.type, default is None, where, rules.schema.describe())
    return read.values, default, read.failed


def _raw(column: pa.Array) -> pa.Array:
    """Text as its bytes (shown as `b'...'`), so that invalid UTF-8 can be shown; other columns as they are."""
    return column.view(pa.binary()) if pa.types.is_string(column.type) else column


def _invalid_utf8(column) -> np.ndarray:
    """`[rows]` bool: values that are bytes but not UTF-8 (binary columns, or string data that fails validation)."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        return np.array([v is not None and decoded(v) is None for v in column.to_pylist()], bool)
    try:
        column.validate(full=True)
        return np.zeros(len(column), bool)
    except pa.ArrowInvalid:
        raw = column.view(pa.binary()) if pa.types.is_string(column.type) else column
        return np.array([v is not None and decoded(v) is None for v in raw.to_pylist()], bool)


def _default(name: str, table: str, rules: Rules):
    if table == INTERACTIONS:
        return {RATING: None if rules.schema.rating else 1.0, TIMESTAMP: None}.get(name)
    if name in (USER_ID, ITEM_ID):
        return None
    return rules.schema.get(name).default


def _range(name: str, table: str, rules: Rules) -> tuple[float, float] | None:
    if table == INTERACTIONS:
        return rules.schema.rating_range if name == RATING and rules.schema.rating else None
    if name in (USER_ID, ITEM_ID):
        return None
    return rules.schema.get(name).valid_range


def concat_dead(parts: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(parts) if parts else DEAD_LETTER_SCHEMA.empty_table()


SOURCE = "_source_file"  # carried beside the rows of a batch through grouping, for dead letters


def with_source(rows: pa.Table, source: str) -> pa.Table:
    return rows.append_column(SOURCE, pa.array([source] * rows.num_rows, pa.string()))


def keep_one_per_id(rows: pa.Table, key: str, table: str) -> tuple[pa.Table, pa.Table]:
    """One row per id: the first by (source file name, then the row's values); the others are dead letters.

    `rows` carry their `SOURCE` column. The rule does not depend on the order rows
    arrive in, so a rerun keeps the same rows. Returns rows without `SOURCE`.
    """
    ids, sources = rows[key].to_pylist(), rows[SOURCE].to_pylist()
    values = [repr(tuple(row.values())) for row in rows.drop_columns([SOURCE]).to_pylist()]
    order = sorted(range(rows.num_rows), key=lambda i: (ids[i], sources[i], values[i]))
    kept = np.zeros(rows.num_rows, bool)
    for position, row in enumerate(order):
        kept[row] = position == 0 or ids[order[position - 1]] != ids[row]
    reason = "duplicate_user" if table == USERS else "duplicate_item"
    return rows.filter(pa.array(kept)).drop_columns([SOURCE]), _dead_rows(rows, ~kept, table, reason, key)


def _dead_rows(rows: pa.Table, mask: np.ndarray, table: str, reason: str, column: str) -> pa.Table:
    """Dead letters for the rows of `rows` (with `SOURCE`) where `mask` is true, showing `column`."""
    picked = rows.filter(pa.array(mask))
    return dead_letters(table, reason, column, picked[column].combine_chunks(), picked[SOURCE].combine_chunks())


def group_users(
    users: pa.Table | None, interactions: pa.Table, catalogue: pa.Array, schema: FeatureSchema
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The checks that need all rows of the same users: duplicates and ids unknown to the other tables.

    Args:
        users: the users table's rows of these users, with `SOURCE`; None when the job
            has no users table (every user of `interactions` then gets the features' defaults).
        interactions: row-checked interactions of these users, with `SOURCE`.
        catalogue: `[items]` the item ids of the (deduplicated) items table.

    Returns:
        `(users, interactions, dead letters)`: one row per user (users with no
        interactions included), and the interactions to use, neither with `SOURCE`.
    """
    dead = []
    if users is None:
        ids = pc.unique(interactions[USER_ID].combine_chunks())
        users = pa.table(
            [ids] + [pa.array([f.default] * len(ids), f.arrow_type()) for f in schema.of("user")],
            schema=schema.table_schema("user"),
        )
    else:
        users, duplicates = keep_one_per_id(users, USER_ID, USERS)
        dead.append(duplicates)
    for column, known, reason in ((ITEM_ID, catalogue, "unknown_item"), (USER_ID, users[USER_ID], "unknown_user")):
        unknown = pc.invert(pc.is_in(interactions[column], value_set=one_array(known)))
        unknown = unknown.to_numpy(zero_copy_only=False)
        dead.append(_dead_rows(interactions, unknown, INTERACTIONS, reason, column))
        interactions = interactions.filter(pa.array(~unknown))
    event = [USER_ID, ITEM_ID, TIMESTAMP]
    # Sorted first, so that the copy kept (the lowest rating, then source) does not depend on arrival order.
    interactions = interactions.sort_by([(c, "ascending") for c in (*event, RATING, SOURCE)])
    first = interactions.append_column("_row", pa.array(np.arange(interactions.num_rows)))
    first = first.group_by(event, use_threads=False).aggregate([("_row", "min")])["_row_min"].to_numpy()
    repeated = np.ones(interactions.num_rows, bool)
    repeated[first] = False
    dead.append(_dead_rows(interactions, repeated, INTERACTIONS, "duplicate_event", ITEM_ID))
    interactions = interactions.filter(pa.array(~repeated)).drop_columns([SOURCE])
    return users, interactions, concat_dead(dead)
