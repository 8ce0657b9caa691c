"""Beam-free scoring kernels: exact top-K with seen items excluded, re-ranking, fallbacks.

Used by offline evaluation and by the batch job, so that both rank the same way.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

NEG_INF = -np.inf


@tf.function(reduce_retracing=True)
def _top_k_excluding(
    queries: tf.Tensor, items: tf.Tensor, seen: tf.Tensor, k: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Top-k of `queries @ items.T` with the `[pairs, 2]` (row, item) positions `seen` set to -inf.

    The exclusion is a scatter into the score matrix: no `[rows, items]` mask is built.
    """
    scores = tf.matmul(queries, items, transpose_b=True)
    excluded = tf.fill(tf.shape(seen)[:1], tf.constant(NEG_INF, scores.dtype))
    return tf.math.top_k(tf.tensor_scatter_nd_update(scores, seen, excluded), k=k)


def top_k_unseen(
    queries: np.ndarray,
    items: np.ndarray,
    seen: list[np.ndarray],
    k: int,
    block_size: int = 1024,
    shard_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k items by dot product, skipping each query's seen items.

    With `shard_size`, the items are scored a shard at a time (near-equal shards of
    at most that many items) and the shards' top-k lists merged: the same result
    (ties go to the lower item index either way), with a `[block, shard_size]`
    score matrix instead of `[block, items]`.

    Args:
        queries: `[num_queries, dim]` float32 query embeddings.
        items: `[num_items, dim]` float32 item embeddings.
        seen: per query, the item indices to exclude.
        k: how many to return; at most `num_items`.
        block_size: queries scored per matmul.
        shard_size: items scored per matmul (None: all).

    Returns:
        scores `[num_queries, k]` (descending; -inf where a query has fewer than k
        unseen items) and item indices `[num_queries, k]` (-1 there).
    """
    num_items = items.shape[0]
    k = min(k, num_items)
    shards = [
        (start, tf.constant(items[start:stop], tf.float32)) for start, stop in _shard_bounds(num_items, shard_size)
    ]
    all_scores, all_indices = [], []
    for start in range(0, queries.shape[0], block_size):
        block_queries = tf.constant(queries[start : start + block_size], tf.float32)
        rows = np.repeat(np.arange(block_queries.shape[0]), [len(s) for s in seen[start : start + block_size]])
        columns = np.concatenate([np.asarray(s, np.int64) for s in seen[start : start + block_size]] or [[]])
        partial_scores, partial_indices = [], []
        for offset, shard in shards:
            inside = (columns >= offset) & (columns < offset + shard.shape[0])
            pairs = tf.constant(np.stack([rows[inside], columns[inside] - offset], axis=1).astype(np.int64))
            shard_k = tf.constant(min(k, shard.shape[0]), tf.int32)
            scores, indices = _top_k_excluding(block_queries, shard, tf.reshape(pairs, [-1, 2]), shard_k)
            partial_scores.append(scores.numpy())
            partial_indices.append(indices.numpy() + offset)
        if len(shards) == 1:
            scores, indices = partial_scores[0], partial_indices[0]
        else:
            scores, indices = _merge(np.concatenate(partial_scores, axis=1), np.concatenate(partial_indices, axis=1), k)
        all_scores.append(scores)
        all_indices.append(indices)
    scores = np.concatenate(all_scores) if all_scores else np.zeros((0, k), np.float32)
    indices = np.concatenate(all_indices) if all_indices else np.zeros((0, k), np.int64)
    return scores, np.where(np.isneginf(scores), -1, indices).astype(np.int64)


_MIN_SHARD = 16  # TF multiplies by a one-item shard on another path, whose rounding differs


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
    retrieval = _standardise(retrieval_scores, valid)
    blended = weight * _standardise(ranking_scores, rated) + (1.0 - weight) * retrieval
    blended = np.where(rated.any(axis=1, keepdims=True), blended, retrieval)
    if popularity_weight:
        blended = blended + popularity_weight * _standardise(np.log1p(np.maximum(popularity, 0.0)), valid)
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
    keys = (
        candidate_indices,
        -np.where(valid, retrieval_scores, NEG_INF),
        -np.where(valid, scores, NEG_INF),
    )
    return np.lexsort(keys, axis=-1)[:, :final_k]


def _standardise(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-row z-scores of `scores` `[rows, k]` over the `valid` entries (0 elsewhere and for constant rows)."""
    values = np.where(valid, scores, 0.0).astype(np.float64)
    count = np.maximum(valid.sum(axis=1, keepdims=True), 1)
    mean = values.sum(axis=1, keepdims=True) / count
    spread = np.sqrt((np.where(valid, values - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / count)
    return np.where(valid, (values - mean) / np.where(spread > 0, spread, 1.0), 0.0)
