"""Beam-free scoring kernels: exact top-K with seen items excluded, re-ranking, fallbacks.

Used by offline evaluation and by the batch job, so that both rank the same way.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

NEG_INF = -np.inf


def exclusion_mask(seen: list[np.ndarray], num_items: int) -> np.ndarray:
    """`[len(seen), num_items]` bool, true where the item index is in that row's `seen`."""
    mask = np.zeros((len(seen), num_items), dtype=bool)
    rows = np.repeat(np.arange(len(seen)), [len(s) for s in seen])
    mask[rows, np.concatenate(seen).astype(np.int64) if seen else []] = True
    return mask


@tf.function(reduce_retracing=True)
def _masked_top_k(queries: tf.Tensor, items: tf.Tensor, mask: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    scores = tf.matmul(queries, items, transpose_b=True)
    scores = tf.where(mask, tf.constant(NEG_INF, scores.dtype), scores)
    return tf.math.top_k(scores, k=k)


def top_k_unseen(
    queries: np.ndarray, items: np.ndarray, seen: list[np.ndarray], k: int, block_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k items by dot product, skipping each query's seen items.

    Args:
        queries: `[num_queries, dim]` float32 query embeddings.
        items: `[num_items, dim]` float32 item embeddings.
        seen: per query, the item indices to exclude.
        k: how many to return; at most `num_items`.
        block_size: queries scored per matmul.

    Returns:
        scores `[num_queries, k]` (descending; -inf where a query has fewer than k
        unseen items) and item indices `[num_queries, k]` (-1 there).
    """
    k = min(k, items.shape[0])
    all_scores, all_indices = [], []
    items_tensor = tf.constant(items, tf.float32)
    for start in range(0, queries.shape[0], block_size):
        block = slice(start, start + block_size)
        mask = exclusion_mask(seen[block], items.shape[0])
        scores, indices = _masked_top_k(
            tf.constant(queries[block], tf.float32), items_tensor, tf.constant(mask), tf.constant(k, tf.int32)
        )
        all_scores.append(scores.numpy())
        all_indices.append(indices.numpy())
    scores = np.concatenate(all_scores) if all_scores else np.zeros((0, k), np.float32)
    indices = np.concatenate(all_indices) if all_indices else np.zeros((0, k), np.int64)
    return scores, np.where(np.isneginf(scores), -1, indices).astype(np.int64)


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
