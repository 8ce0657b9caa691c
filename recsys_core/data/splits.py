"""Train/test splits of the ratings table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from recsys_core.console import native_stderr_silenced
from recsys_core.data.tables import InteractionData

# Up to this many ratings the split is the tutorials' (`tf.data` shuffle); its buffer holds each row as a
# tensor (~230 bytes: 920 MB for 4M ratings), so larger data is permuted by numpy (8 bytes a row).
TUTORIAL_SPLIT_MAX_ROWS = 2_000_000


def random_split(data: InteractionData, test_fraction: float, seed: int) -> tuple[InteractionData, InteractionData]:
    """Seeded random split, identical to the TFRS tutorials' for seed 42 (MovieLens-100K and -1M).

    The tutorials run `tf.random.set_seed(seed)`, `shuffle(n, seed=seed,
    reshuffle_each_iteration=False)`, then take the first 80 % for training;
    the same permutation is computed here with `tf.data`, without touching the
    caller's global seed. Above `TUTORIAL_SPLIT_MAX_ROWS` ratings, numpy's
    seeded permutation stands in for it.
    """
    rows = data.ratings.num_rows
    if rows > TUTORIAL_SPLIT_MAX_ROWS:
        order = np.random.default_rng(seed).permutation(rows)
    else:
        order = _tf_shuffle_permutation(rows, seed)
    num_train = round(data.ratings.num_rows * (1.0 - test_fraction))
    return _take(data, order[:num_train]), _take(data, order[num_train:])


def temporal_split(data: InteractionData, test_fraction: float) -> tuple[InteractionData, InteractionData]:
    """Global temporal split: the last `test_fraction` of ratings by time are the test set."""
    order = np.argsort(data.ratings["timestamp"].to_numpy(), kind="stable")
    num_train = round(data.ratings.num_rows * (1.0 - test_fraction))
    return _take(data, np.sort(order[:num_train])), _take(data, np.sort(order[num_train:]))


def split(data: InteractionData, kind: str, test_fraction: float, seed: int) -> tuple[InteractionData, InteractionData]:
    """Dispatches on `kind` (`random` or `temporal`)."""
    if kind == "random":
        return random_split(data, test_fraction, seed)
    if kind == "temporal":
        return temporal_split(data, test_fraction)
    raise ValueError(f"unknown split {kind!r}; use random or temporal")


def _take(data: InteractionData, rows: np.ndarray) -> InteractionData:
    return data.with_ratings(data.ratings.take(pa.array(rows)))


def _tf_shuffle_permutation(num_rows: int, seed: int) -> np.ndarray:
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.random.set_seed(seed)  # graph-level seed: leaves the eager global seed alone
        dataset = tf.data.Dataset.range(num_rows).shuffle(num_rows, seed=seed, reshuffle_each_iteration=False)
        batch = dataset.batch(num_rows).get_single_element()
    # A v1 session logs "MLIR V1 optimization pass is not enabled" through absl, past TF_CPP_MIN_LOG_LEVEL.
    with native_stderr_silenced(), tf.compat.v1.Session(graph=graph) as session:
        return session.run(batch)
