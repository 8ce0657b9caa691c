"""How a column of a user's input table is read as the type its schema declares: one reader for training
(`parquet_source`, which refuses a value that does not convert) and the job (`serving.validation`, which
dead-letters its row).

Both read a table's files the way Spark, Hive and Beam write them (`is_hidden` files left out), timestamps
as int64 seconds (Arrow timestamps converted, fractions of a second dropped), binary text as UTF-8, and cast
each column to its declared type, value by value where a whole cast fails.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_core.data.tables import DataError, one_array, timestamps_as_seconds
from recsys_core.schema import TIMESTAMP

_CONVERT_SLICE = 4096  # rows cast at once when a column holds values that do not convert


def is_hidden(path: str) -> bool:
    """A file Spark, Hive and Beam leave out of a table: its name starts with `_` or `.` (`_SUCCESS`, `.crc`)."""
    return path.rstrip("/").rsplit("/", 1)[-1].startswith(("_", "."))


@dataclasses.dataclass(frozen=True)
class ReadColumn:
    """A column as read: `values` `[rows]` of the declared type, null where the table has no such column, the
    value is null, or it does not convert; `failed` `[rows]` bool marks those that do not convert (None: all
    converted)."""

    values: pa.Array
    failed: pa.Array | None

    def first_failure(self, written: pa.Table, name: str) -> tuple[int, object] | None:
        """`(row, value as written)` of the first value that does not convert, or None."""
        if self.failed is None or not pc.any(self.failed).as_py():
            return None
        row = pc.index(self.failed, True).as_py()
        return row, one_array(written[name])[row].as_py()


def read_column(rows: pa.Table, name: str, kind: pa.DataType, required: bool, where: str, declared_by: str):
    """Column `name` of `rows` read as `kind` (`ReadColumn`).

    Args:
        required: a missing column is an error (else: all null, for the caller's default).
        where: the table, and file where known, for messages (`"users file u.parquet"`).
        declared_by: the schema that declares the column, for messages.

    Raises:
        DataError: the column is missing and required, or its type can never be `kind` (a list for a number):
            the input is wrong as a whole, not a row.
    """
    if name not in rows.column_names:
        if required:
            raise DataError(
                f"{where} has no column {name!r}, which {declared_by} declares; add it, give the feature a "
                f"default, or remove it from the schema (columns: {rows.column_names})"
            )
        return ReadColumn(pa.nulls(rows.num_rows, kind), None)
    column = timestamps_as_seconds(one_array(rows[name]))
    if name == TIMESTAMP and pa.types.is_floating(column.type):
        column = pc.floor(column)  # fractions of a second: harmless, dropped
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        column = pa.array([decoded(v) for v in column.to_pylist()], pa.string())
    try:
        return ReadColumn(column.cast(kind), None)
    except pa.ArrowNotImplementedError as error:
        raise DataError(
            f"{where}: column {name} is {column.type}, which cannot be read as the {kind} that {declared_by} "
            f"declares: {error}"
        ) from error
    except pa.ArrowInvalid:  # some values do not convert ("four" for a number)
        return ReadColumn(*_convert_each(column, kind))


def _convert_each(column: pa.Array, kind: pa.DataType) -> tuple[pa.Array, pa.Array]:
    """`column` (at least one row) cast to `kind` value by value where a whole cast failed: the cast column (null
    where a value does not convert) and `[rows]` bool marking those values. Slices that cast whole are cast at
    once."""
    parts, failed = [], []
    for start in range(0, len(column), _CONVERT_SLICE):
        part = column.slice(start, _CONVERT_SLICE)
        try:
            parts.append(part.cast(kind))
            failed.append(np.zeros(len(part), bool))
            continue
        except pa.ArrowInvalid:
            pass
        values, bad = [], np.zeros(len(part), bool)
        for row, value in enumerate(part):
            try:
                values.append(pa.array([value.as_py()], part.type).cast(kind)[0].as_py())
            except (pa.ArrowInvalid, OverflowError):
                values.append(None)
                bad[row] = True
        parts.append(pa.array(values, kind))
        failed.append(bad)
    return pa.concat_arrays(parts), pa.array(np.concatenate(failed))


def decoded(value: bytes | None) -> str | None:
    """Text of valid UTF-8 bytes; None otherwise."""
    try:
        return None if value is None else value.decode("utf-8")
    except UnicodeDecodeError:
        return None
