"""Model inputs: which columns each model reads, their tensor specs, and Arrow -> numpy conversion.

Models take a dict of raw features named as the schema's columns. Two kinds are
matrices: a multi-valued categorical (a list column in the tables) is a
`[batch, longest]` string matrix padded with b"", and so is `user_history`, the
ids of the user's most recent interactions `[batch, n]` (built by `history.py`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from recsys_core.schema import (
    CANDIDATE_PROBABILITY,
    HISTORY,
    ITEM_ID,
    PADDING,
    RATING,
    TIMESTAMP,
    USER_ID,
    FeatureSchema,
)

_FIXED = {
    USER_ID: "string",
    ITEM_ID: "string",
    TIMESTAMP: "int64",
    RATING: "float32",
    HISTORY: "string",
    CANDIDATE_PROBABILITY: "float32",
}


def user_inputs(schema: FeatureSchema, consumer: str | None = None) -> tuple[str, ...]:
    """`user_id`, the user features `consumer` reads (every used one if None), the query time."""
    features = [f.name for f in schema.of("user", consumer) if f.feeds]
    return (USER_ID, *features, TIMESTAMP)


def item_inputs(schema: FeatureSchema, consumer: str | None = None) -> tuple[str, ...]:
    """`item_id` and the item features `consumer` reads (every used one if None)."""
    return (ITEM_ID, *(f.name for f in schema.of("item", consumer) if f.feeds))


def query_inputs(schema: FeatureSchema) -> tuple[str, ...]:
    """What the query tower's signature takes: the user's inputs and their history."""
    return user_inputs(schema, "towers") + (HISTORY,)


def _is_matrix(schema: FeatureSchema, name: str) -> bool:
    return name == HISTORY or (name not in _FIXED and schema.get(name).kind == "multi_categorical")


def _dtype(schema: FeatureSchema, name: str) -> str:
    return _FIXED[name] if name in _FIXED else schema.get(name).tensor_dtype()


def tensor_specs(schema: FeatureSchema, names: tuple[str, ...]) -> dict:
    """`tf.TensorSpec`s for a signature taking the named inputs: `[batch]`, or `[batch, None]` for lists."""
    import tensorflow as tf

    return {
        name: tf.TensorSpec(
            [None, None] if _is_matrix(schema, name) else [None], tf.as_dtype(_dtype(schema, name)), name
        )
        for name in names
    }


def feature_arrays(
    table: pa.Table, schema: FeatureSchema, names: tuple[str, ...], widths: dict[str, int] | None = None
) -> dict[str, np.ndarray]:
    """Numpy columns of `table` for the named inputs; strings become bytes objects.

    Returns:
        name -> `[rows]` array, or `[rows, width]` bytes padded with b"" for list columns: `widths[name]`,
        else the longest list here.
    """
    arrays = {}
    for name in names:
        column = table[name]
        if _is_matrix(schema, name):
            arrays[name] = pad_lists(column.to_pylist(), (widths or {}).get(name))
        elif _dtype(schema, name) == "string":
            arrays[name] = string_bytes(column)
        else:
            arrays[name] = column.to_numpy().astype(_dtype(schema, name))
    return arrays


def string_bytes(column) -> np.ndarray:
    """`[rows]` object array of bytes from a pyarrow string array or column (how TF takes strings)."""
    return np.array([v.encode() for v in column.to_pylist()], dtype=object)


def pad_lists(lists: list[list[str]], width: int | None = None) -> np.ndarray:
    """`[rows, width]` object array of bytes, padded with b""; `width` defaults to max(1, longest list)."""
    width = width or max([len(values) for values in lists] + [1])
    padded = np.full((len(lists), width), PADDING, dtype=object)
    for row, values in enumerate(lists):
        padded[row, : len(values)] = [v.encode() for v in values]
    return padded


def query_arrays(
    users: pa.Table, schema: FeatureSchema, timestamps: np.ndarray, history: np.ndarray
) -> dict[str, np.ndarray]:
    """Every user-side input for each row of a users table.

    Args:
        users: rows of the users table.
        timestamps: `[rows]` query times, seconds.
        history: `[rows, n]` object array of item ids (bytes), padded with b"".
    """
    arrays = feature_arrays(users, schema, user_inputs(schema)[:-1])
    arrays[TIMESTAMP] = np.asarray(timestamps, dtype=np.int64)
    arrays[HISTORY] = history
    return arrays
