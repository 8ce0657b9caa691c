"""Beam-free scoring kernels: exact top-K with seen items excluded, re-ranking, fallbacks.

Used by offline evaluation and by the batch job, so that both rank the same way.
"""

from __future__ import annotations

import threading

import numpy as np
import tensorflow as tf

NEG_INF = -np.inf


_RUN = 64  # at most this many items per run of the two-stage selection (see `_top_k_excluding`)
# TensorFlow's CPU matmul rounds the columns of a partial tile of 16 otherwise than those of full tiles (measured
# on AVX2 and AVX-512 machines): score matrices as wide as a multiple of 64 give an item the same score bits in
# any shard, so the lists are byte-identical whatever `--item-shard-size`. A multiple of every run length.
_WIDTH = 64


_MATRIX = tf.TensorSpec([None, None], tf.float32)


# One trace for every shape (blocks, catalogues and exclusion lists all vary); plain TF ops: no AutoGraph.
@tf.function(
    input_signature=[
        _MATRIX,
        _MATRIX,
        tf.TensorSpec([None, 2], tf.int64),
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([], tf.int64),
    ],
    autograph=False,
)
def _top_k_excluding(
    queries: tf.Tensor, items_t: tf.Tensor, excluded: tf.Tensor, k: tf.Tensor, run: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Top-k of `queries @ items_t` with the `[pairs, 2]` (row, item) positions `excluded` skipped.

    Exact, in two stages that read the score matrix about once: the best score of
    each run of `run` consecutive items, the k best runs, then the k best scores
    among those runs' items that reach the k-th best run's best. The k best scores
    all lie in the k best runs (each of those runs holds a score at least as high as
    the k-th best run's best), and ties go to the lower item index as in
    `tf.math.top_k` over the whole row.
    Excluded items are removed from the small tensors only (the best of each run
    they are in, and the chosen runs' scores), never by writing into or copying
    the `[rows, items]` score matrix.

    Args:
        queries: `[rows, dim]`; items_t: `[dim, runs * run]` (pad with zeros and exclude the padding).
        excluded: `[pairs, 2]` int64; k: int32 scalar; run: int64 scalar.

    Returns:
        scores `[rows, k]` and item positions `[rows, k]` int64.
    """
    minus_inf = tf.constant(NEG_INF, queries.dtype)
    scores = tf.matmul(queries, items_t)
    rows = tf.shape(scores, out_type=tf.int64)[0]
    runs = tf.reshape(scores, [rows, -1, run])  # [rows, runs, run]
    num_runs = tf.shape(runs, out_type=tf.int64)[1]
    row, item = excluded[:, 0], excluded[:, 1]
    cell, offset = row * num_runs + item // run, item % run  # the excluded item's run, and its place there
    touched, group = tf.unique(cell)
    hidden = tf.scatter_nd(
        tf.stack([tf.cast(group, tf.int64), offset], axis=1),
        tf.ones_like(offset, tf.bool),
        [tf.size(touched, out_type=tf.int64), run],
    )
    rest = tf.reduce_max(tf.where(hidden, minus_inf, tf.gather(tf.reshape(runs, [-1, run]), touched)), axis=1)
    best = tf.tensor_scatter_nd_update(tf.reshape(tf.reduce_max(runs, axis=2), [-1]), touched[:, None], rest)
    best_values, best_runs = tf.math.top_k(tf.reshape(best, [rows, -1]), k)
    best_runs = tf.cast(tf.sort(best_runs, axis=1), tf.int64)  # keeps the lower-index-first order of ties
    chosen = tf.gather(runs, best_runs, batch_dims=1)  # [rows, k, run]
    slot_of_cell = tf.scatter_nd(  # 1 + the position of each chosen run among its row's chosen runs
        tf.reshape(tf.range(rows)[:, None] * num_runs + best_runs, [-1, 1]),
        tf.reshape(tf.tile(tf.range(1, tf.shape(best_runs, out_type=tf.int64)[1] + 1)[None, :], [rows, 1]), [-1]),
        [rows * num_runs],
    )
    slot = tf.gather(slot_of_cell, cell) - 1
    inside = slot >= 0
    chosen = tf.tensor_scatter_nd_update(
        chosen,
        tf.boolean_mask(tf.stack([row, slot, offset], axis=1), inside),
        tf.fill(tf.reduce_sum(tf.cast(inside, tf.int32))[None], minus_inf),
    )
    # Only scores at least the k-th best run's best can be among the k best: about k of the k * run.
    # (Written "not below" so that NaN scores, which the publish gate counts, are kept too.)
    chosen = tf.reshape(chosen, [rows, -1])
    kept = tf.where(~(chosen < best_values[:, -1:]))  # [n, 2] (row, place), row-major: places ascending
    values = tf.RaggedTensor.from_value_rowids(tf.gather_nd(chosen, kept), kept[:, 0], nrows=rows)
    places = tf.RaggedTensor.from_value_rowids(kept[:, 1], kept[:, 0], nrows=rows)
    values, positions = tf.math.top_k(values.to_tensor(default_value=minus_inf), k)
    positions = tf.gather(places.to_tensor(), positions, batch_dims=1)
    return values, tf.gather(best_runs, positions // run, batch_dims=1) * run + positions % run


class ExactIndex:
    """Item embeddings prepared once for exact top-K: transposed, padded, in shards.

    With `shard_size`, the items are scored a shard at a time (near-equal shards of
    at most that many items) and the shards' top-k lists merged: the same result
    (ties go to the lower item index either way), with a `[block, shard_size]`
    score matrix instead of `[block, items]`.

    Args:
        items: `[num_items, dim]` float32 item embeddings.
        shard_size: items scored per matmul (None: all).
    """

    def __init__(self, items: np.ndarray, shard_size: int | None = None) -> None:
        self._items = np.asarray(items, np.float32)
        self._bounds = _shard_bounds(len(self._items), shard_size)
        self._shards: dict[int, list[_Shard]] = {}  # by k: the run length depends on it
        self._lock = threading.Lock()

    def top_k(
        self, queries: np.ndarray, seen: list[np.ndarray], k: int, block_size: int = 512
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k items by dot product, skipping each query's seen items.

        Args:
            queries: `[num_queries, dim]` float32 query embeddings.
            seen: per query, the item indices to exclude.
            k: how many to return; at most `num_items`.
            block_size: queries scored per matmul (512 keeps a block's work in cache best here).

        Returns:
            scores `[num_queries, k]` (descending; -inf where a query has fewer than k
            unseen items) and item indices `[num_queries, k]` (-1 there).
        """
        k = min(k, len(self._items))
        with self._lock:
            if k not in self._shards:
                self._shards[k] = [_Shard(self._items, start, stop, k) for start, stop in self._bounds]
            shards = self._shards[k]
        all_scores, all_indices = [np.zeros((0, k), np.float32)], [np.zeros((0, k), np.int64)]
        for start in range(0, queries.shape[0], block_size):
            block_queries = tf.constant(queries[start : start + block_size], tf.float32)
            block_seen = seen[start : start + block_size]
            rows = np.repeat(np.arange(len(block_seen)), [len(s) for s in block_seen])
            columns = np.concatenate([np.asarray(s, np.int64) for s in block_seen] or [[]])
            partial = [shard.top_k(block_queries, rows, columns) for shard in shards]
            if len(shards) == 1:
                scores, indices = partial[0]
            else:
                scores, indices = _merge(*(np.concatenate(parts, axis=1) for parts in zip(*partial, strict=True)), k)
            all_scores.append(scores)
            all_indices.append(indices)
        scores = np.concatenate(all_scores)
        return scores, np.where(np.isneginf(scores), -1, np.concatenate(all_indices)).astype(np.int64)


def top_k_unseen(
    queries: np.ndarray,
    items: np.ndarray,
    seen: list[np.ndarray],
    k: int,
    block_size: int = 512,
    shard_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`ExactIndex(items, shard_size).top_k(queries, seen, k, block_size)`, for one-off calls."""
    return ExactIndex(items, shard_size).top_k(queries, seen, k, block_size)


class _Shard:
    """Items `[start, stop)` as a tensor padded to whole runs of `_top_k_excluding`, and their top-k."""

    def __init__(self, items: np.ndarray, start: int, stop: int, k: int) -> None:
        size = stop - start
        self.start, self.stop, self.k = start, stop, min(k, size)
        # Runs short enough that there are ~4k of them: the second stage then reads ~1/4 of the scores at most.
        # A power of two, so that it divides the padded width.
        self.run = 1 << int(np.log2(max(1, min(_RUN, size // (4 * self.k)))))
        padded = -(-size // _WIDTH) * _WIDTH
        self.padding = np.arange(size, padded)
        embeddings = np.zeros((items.shape[1], padded), np.float32)  # transposed: the fastest matmul layout here
        embeddings[:, :size] = items[start:stop].T
        self.embeddings_t = tf.constant(embeddings)

    def top_k(self, queries: tf.Tensor, rows: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`[queries, k]` scores and global item indices, excluding the (row, item) pairs `rows`, `columns`."""
        inside = (columns >= self.start) & (columns < self.stop)
        excluded = np.concatenate(
            [
                np.stack([rows[inside], columns[inside] - self.start], axis=1),
                np.stack(np.meshgrid(np.arange(queries.shape[0]), self.padding, indexing="ij"), axis=2).reshape(-1, 2),
            ]
        ).astype(np.int64)
        scores, positions = _top_k_excluding(
            queries,
            self.embeddings_t,
            tf.constant(excluded.reshape(-1, 2)),
            tf.constant(self.k),
            tf.constant(self.run, tf.int64),
        )
        return scores.numpy(), positions.numpy() + self.start


_MIN_SHARD = _WIDTH  # a narrower shard would be padded to this width anyway


def _shard_bounds(num_items: int, shard_size: int | None) -> list[tuple[int, int]]:
    """Near-equal `(start, stop)` item ranges of at most `shard_size` (and at least `_MIN_SHARD`) items."""
    count = 1 if not shard_size else max(1, min(-(-num_items // shard_size), num_items // _MIN_SHARD))
    edges = np.linspace(0, num_items, count + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def _merge(scores: np.ndarray, indices: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best of the shards' lists `[rows, sum of shard k]`, best first, ties to the lower item index.

    Always sorts: the shards' lists together may hold exactly k entries and still be out of order.
    """
    order = np.lexsort((indices, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(indices, order, axis=1)


def top_k_popular_unseen(popularity: np.ndarray, seen: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` most popular items each row has not seen.

    Args:
        popularity: `[num_items]` scores (e.g. interaction counts).
        seen: per row, the item indices to exclude.

    Returns:
        popularity scores and item indices, `[len(seen), k]`, as `top_k_unseen`.
    """
    ones = np.ones((len(seen), 1), np.float32)
    return top_k_unseen(ones, np.asarray(popularity, np.float32)[:, None], seen, k)


def blend(
    ranking_scores: np.ndarray,
    retrieval_scores: np.ndarray,
    valid: np.ndarray,
    weight: float,
    popularity: np.ndarray | None = None,
    popularity_weight: float = 0.0,
) -> np.ndarray:
    """The final score of each candidate.

    `weight * z(ranking) + (1 - weight) * z(retrieval) + popularity_weight * z(log(1 + popularity))`,
    with z-scores over each row's valid candidates, so the weights mean the same
    whatever the scales of the models. Rows without ranking scores (NaN: fallbacks,
    no re-ranker) use `z(retrieval)` for the first two terms.

    Args:
        ranking_scores, retrieval_scores: `[rows, k]`.
        valid: `[rows, k]` bool, false for empty slots.
        weight: 1 orders by ranking score alone, 0 by retrieval score alone.
        popularity: `[rows, k]` training interaction counts of the candidates.
        popularity_weight: weight of the popularity prior.

    Returns:
        `[rows, k]` float64 scores, -inf at empty slots.
    """
    rated = valid & ~np.isnan(ranking_scores)
    retrieval = standardise(retrieval_scores, valid)
    blended = weight * standardise(ranking_scores, rated) + (1.0 - weight) * retrieval
    blended = np.where(rated.any(axis=1, keepdims=True), blended, retrieval)
    if popularity_weight:
        blended = blended + popularity_weight * standardise(np.log1p(np.maximum(popularity, 0.0)), valid)
    return np.where(valid, blended, NEG_INF)


def rerank(candidate_indices: np.ndarray, scores: np.ndarray, retrieval_scores: np.ndarray, final_k: int) -> np.ndarray:
    """Orders each row's candidates by `scores`, then retrieval score, then item index.

    Args:
        candidate_indices: `[rows, k]` item indices, -1 for empty slots.
        scores: `[rows, k]` final scores (e.g. from `blend`); retrieval_scores: `[rows, k]`.
        final_k: how many to keep per row.

    Returns:
        `[rows, final_k]` positions into the candidate axis, best first; empty
        slots sort last.
    """
    valid = candidate_indices >= 0
    primary = -np.where(valid, scores, NEG_INF)
    order = np.argsort(primary, axis=-1)
    # Rows whose order the score alone leaves open (equal scores) take the full three-key sort.
    ordered = np.take_along_axis(primary, order, axis=-1)
    tied = (ordered[:, 1:] == ordered[:, :-1]).any(axis=-1)
    if tied.any():
        keys = (candidate_indices[tied], -np.where(valid, retrieval_scores, NEG_INF)[tied], primary[tied])
        order[tied] = np.lexsort(keys, axis=-1)
    return order[:, :final_k]


def standardise(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-row z-scores of `scores` `[rows, k]` over the `valid` entries (0 elsewhere and for constant rows)."""
    values = np.where(valid, scores, 0.0).astype(np.float64)
    count = np.maximum(valid.sum(axis=1, keepdims=True), 1)
    mean = values.sum(axis=1, keepdims=True) / count
    spread = np.sqrt((np.where(valid, values - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / count)
    return np.where(valid, (values - mean) / np.where(spread > 0, spread, 1.0), 0.0)
