"""Model input features: names, tensor specs, and Arrow -> numpy conversion.

Models take a dict of raw canonical features (as in TFDS MovieLens). Two are
not columns of the tables: `movie_genres`, a ragged list there, which models
receive as a dense `[batch, max_genres]` int64 matrix padded with -1, and
`user_history`, the ids of the user's most recent interactions `[batch, n]`
padded with b"", which the query tower reads (built by `history.py`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

USER_FEATURES = (
    "user_id",
    "user_gender",
    "raw_user_age",
    "bucketized_user_age",
    "user_occupation_label",
    "user_zip_code",
)
CONTEXT_FEATURES = ("timestamp",)
HISTORY = "user_history"
HISTORY_PADDING = b""
# What the query tower reads; rating models read RATING_FEATURES.
QUERY_FEATURES = USER_FEATURES + CONTEXT_FEATURES + (HISTORY,)
ITEM_FEATURES = ("movie_id", "movie_title", "movie_genres")
RATING_FEATURES = USER_FEATURES + CONTEXT_FEATURES + ITEM_FEATURES
LABEL = "user_rating"
GENRE_PADDING = -1

_DTYPES = {
    "user_id": "string",
    "user_gender": "bool",
    "raw_user_age": "float32",
    "bucketized_user_age": "float32",
    "user_occupation_label": "int64",
    "user_zip_code": "string",
    "timestamp": "int64",
    "movie_id": "string",
    "movie_title": "string",
    "movie_genres": "int64",
    "user_rating": "float32",
    HISTORY: "string",
}
_MATRICES = ("movie_genres", HISTORY)


def tensor_specs(names: tuple[str, ...]) -> dict:
    """`tf.TensorSpec`s for a signature taking the named features: `[batch]`, genres and history `[batch, None]`."""
    import tensorflow as tf

    return {
        name: tf.TensorSpec([None, None] if name in _MATRICES else [None], tf.as_dtype(_DTYPES[name]), name=name)
        for name in names
    }


def feature_arrays(table: pa.Table, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Numpy columns of `table` for the named features; strings become bytes objects.

    Returns:
        name -> `[rows]` array, or `[rows, max_genres]` int64 for `movie_genres`.
    """
    arrays = {}
    for name in names:
        column = table[name]
        if name == "movie_genres":
            arrays[name] = pad_genres(column.to_pylist())
        elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            arrays[name] = string_bytes(column)
        else:
            arrays[name] = column.to_numpy().astype(_DTYPES[name])
    return arrays


def string_bytes(column) -> np.ndarray:
    """`[rows]` object array of bytes from a pyarrow string array or column (how TF takes strings)."""
    return np.array([v.encode() for v in column.to_pylist()], dtype=object)


def pad_genres(genres: list[list[int]]) -> np.ndarray:
    """`[rows, max(1, longest list)]` int64, padded with -1."""
    width = max([len(g) for g in genres] + [1])
    padded = np.full((len(genres), width), GENRE_PADDING, dtype=np.int64)
    for row, values in enumerate(genres):
        padded[row, : len(values)] = values
    return padded


def query_arrays(users: pa.Table, timestamps: np.ndarray, history: np.ndarray) -> dict[str, np.ndarray]:
    """Query-tower inputs for each row of a users table.

    Args:
        users: rows of the users table.
        timestamps: `[rows]` query times, seconds.
        history: `[rows, n]` object array of item ids (bytes), padded with b"".
    """
    arrays = feature_arrays(users, USER_FEATURES)
    arrays["timestamp"] = np.asarray(timestamps, dtype=np.int64)
    arrays[HISTORY] = history
    return arrays
