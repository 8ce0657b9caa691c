"""Offline evaluation: RMSE for rating models; factorized top-K, recall@k and NDCG@k for retrieval.

Per-user metrics follow the batch job: one query per user (at the time of the
user's last training rating), every item of the catalogue scored, the user's
training items excluded, test items relevant. A popularity ranking is scored
the same way, as the baseline every retrieval model must beat.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow.compute as pc
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core.data.tables import InteractionData, group_by_user, item_counts
from recsys_core.features.schema import ITEM_FEATURES, feature_arrays, query_arrays
from recsys_core.scoring import top_k_popular_unseen, top_k_unseen

Embed = Callable[[dict[str, tf.Tensor]], tf.Tensor]


def batched(fn: Embed, arrays: dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """Applies `fn` to row batches of `arrays` and concatenates the numpy results."""
    num_rows = len(next(iter(arrays.values())))
    outputs = [
        fn({name: tf.constant(values[start : start + batch_size]) for name, values in arrays.items()}).numpy()
        for start in range(0, num_rows, batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)


def rating_metrics(predict: Embed, test_arrays: dict[str, np.ndarray], train_mean: float) -> dict[str, float]:
    """RMSE and MAE of predicted ratings on the test split, with the global-mean RMSE beside them."""
    labels = test_arrays["user_rating"]
    predictions = batched(predict, test_arrays)
    return {
        "rmse": float(np.sqrt(np.mean((predictions - labels) ** 2))),
        "mae": float(np.mean(np.abs(predictions - labels))),
        "global_mean_rmse": float(np.sqrt(np.mean((train_mean - labels) ** 2))),
    }


def retrieval_metrics(
    query_tower: Embed,
    candidate_tower: Embed,
    train: InteractionData,
    test: InteractionData,
    test_arrays: dict[str, np.ndarray],
    ks: tuple[int, ...],
) -> dict[str, float]:
    """Factorized top-K accuracy over all items (TFRS), and per-user recall/NDCG with seen items excluded."""
    items = train.items
    item_ids = items["movie_id"].to_numpy(zero_copy_only=False).astype(object)
    item_embeddings = batched(candidate_tower, feature_arrays(items, ITEM_FEATURES))
    metrics = factorized_top_k(query_tower, candidate_tower, item_embeddings, item_ids, test_arrays, ks)

    users, timestamps, seen, relevant = per_user_split(train, test)
    queries = batched(query_tower, query_arrays(users, timestamps))
    _, model_top = top_k_unseen(queries, item_embeddings, seen, max(ks))
    metrics.update(ranking_quality(model_top, relevant, ks, prefix=""))

    counts = item_counts(train.ratings, items["movie_id"])
    _, popular_top = top_k_popular_unseen(counts, seen, max(ks))
    metrics.update(ranking_quality(popular_top, relevant, ks, prefix="popularity_"))
    return metrics


def factorized_top_k(
    query_tower: Embed,
    candidate_tower: Embed,
    item_embeddings: np.ndarray,
    item_ids: np.ndarray,
    test_arrays: dict[str, np.ndarray],
    ks: tuple[int, ...],
) -> dict[str, float]:
    """TFRS `FactorizedTopK` accuracy of each test rating's movie among all items, as the tutorials report."""
    index = tfrs.layers.factorized_top_k.BruteForce(k=max(ks))
    index.index(tf.constant(item_embeddings), identifiers=tf.constant(item_ids))
    metric = tfrs.metrics.FactorizedTopK(candidates=index, ks=ks)
    num_rows = len(test_arrays["movie_id"])
    for start in range(0, num_rows, 4096):
        batch = {name: tf.constant(values[start : start + 4096]) for name, values in test_arrays.items()}
        metric.update_state(query_tower(batch), candidate_tower(batch), true_candidate_ids=batch["movie_id"])
    return {f"factorized_top_{k}": float(value) for k, value in zip(ks, metric.result(), strict=True)}


def per_user_split(train: InteractionData, test: InteractionData):
    """Per test user: the users-table row, the query time, seen item indices and relevant item indices.

    Returns:
        users table `[num_users]`, timestamps `[num_users]` (the user's last training
        rating, or their first test rating if they have none), seen and relevant
        lists of item indices into `train.items`.
    """
    items = train.items["movie_id"]
    test_users = pc.unique(test.ratings["user_id"])
    users = train.users.take(pc.index_in(test_users, value_set=train.users["user_id"]))
    seen, train_times = group_by_user(train.ratings, test_users, items)
    relevant, test_times = group_by_user(test.ratings, test_users, items)
    timestamps = np.array(
        [t.max() if len(t) else u.min() for t, u in zip(train_times, test_times, strict=True)], dtype=np.int64
    )
    return users, timestamps, seen, relevant


def ranking_quality(top: np.ndarray, relevant: list[np.ndarray], ks: tuple[int, ...], prefix: str) -> dict[str, float]:
    """Mean recall@k (hits / relevant items) and NDCG@k over users, binary relevance.

    Args:
        top: `[num_users, max_k]` recommended item indices, best first (-1 empty).
        relevant: per user, the held-out item indices.
    """
    hits = np.stack([np.isin(row, rel) for row, rel in zip(top, relevant, strict=True)]).astype(np.float64)
    counts = np.array([len(set(rel.tolist())) for rel in relevant], dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    metrics = {}
    for k in ks:
        ideal = np.array([discounts[: int(min(k, c))].sum() for c in counts])
        metrics[f"{prefix}recall_at_{k}"] = float(np.mean(hits[:, :k].sum(1) / counts))
        metrics[f"{prefix}ndcg_at_{k}"] = float(np.mean((hits[:, :k] * discounts[:k]).sum(1) / ideal))
    return metrics
