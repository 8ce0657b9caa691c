"""Beam-free numpy metrics of recommendation lists: ranking accuracy per user with binary relevance, rating errors,
and beyond-accuracy figures of the lists themselves (coverage, exposure Gini, novelty, intra-list diversity).
"""

from __future__ import annotations

import numpy as np

LIST_METRICS = ("recall", "precision", "ndcg", "map", "hit_rate")


def _pad(top: np.ndarray, width: int) -> np.ndarray:
    """The first `width` columns of `top` `[users, max_k]`, padded with -1 (empty) when `max_k < width`."""
    return np.pad(top[:, :width], ((0, 0), (0, max(0, width - top.shape[1]))), constant_values=-1)


def _hits(top: np.ndarray, relevant: list[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Relevance of every slot `[users, width]` bool, and the number of distinct relevant items `[users]` int."""
    top = _pad(np.asarray(top, dtype=np.int64), width)
    rel_items = np.concatenate([np.zeros(0, np.int64), *relevant]).astype(np.int64)
    rel_users = np.repeat(np.arange(len(relevant)), [len(rel) for rel in relevant])
    # One key per (user, item) pair, so a single sorted np.isin finds the hits of every user at once.
    base = max(int(top.max(initial=-1)), int(rel_items.max(initial=-1))) + 1
    rel_keys = np.unique(rel_users * base + rel_items)
    hits = np.isin(np.arange(len(top))[:, None] * base + top, rel_keys) & (top >= 0)
    return hits, np.bincount(rel_keys // base, minlength=len(top))


def _scores(hits: np.ndarray, counts: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-user metrics at `k` from the hits `[users, >= k]` and relevant counts `[users]`; nan where count is 0."""
    hits = hits[:, :k].astype(np.float64)
    cumulative = hits.cumsum(axis=1)
    found = cumulative[:, -1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal_hits = np.minimum(counts, k)
    ideal_dcg = np.concatenate([[0.0], discounts.cumsum()])[ideal_hits]
    valid = counts > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = {
            "recall": found / counts,
            "precision": found / k,
            "ndcg": (hits * discounts).sum(axis=1) / ideal_dcg,
            "map": (hits * cumulative / np.arange(1, k + 1)).sum(axis=1) / ideal_hits,
            "hit_rate": (found > 0).astype(np.float64),
        }
    return {name: np.where(valid, values, np.nan) for name, values in scores.items()}


def per_user_scores(top: np.ndarray, relevant: list[np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Per-user recall, precision, ndcg, map and hit_rate at `k`; see `list_metrics` for the definitions.

    Args:
        top: `[users, max_k]` int item indices, best first, -1 marks an empty slot.
        relevant: per user, a 1-D int array of relevant item indices (duplicates count once; may be empty).
        k: list length; positions beyond `max_k` count as empty.

    Returns:
        Each metric as `[users]` float64, nan for users without relevant items.
    """
    hits, counts = _hits(top, relevant, k)
    return _scores(hits, counts, k)


def list_metrics(
    top: np.ndarray, relevant: list[np.ndarray], ks: tuple[int, ...], prefix: str = ""
) -> dict[str, float]:
    """Mean over users of recall@k, precision@k, ndcg@k, map@k and hit_rate@k, binary relevance.

    With `hit_i` = 1 when slot `i` (0-based) holds a relevant item and `R` the distinct relevant items of a user:
    recall@k = hits in top k / |R| (not min(k, |R|)); precision@k = hits in top k / k;
    ndcg@k = sum_{i<k} hit_i / log2(i + 2), divided by the ideal DCG of min(k, |R|) hits;
    map@k = sum_{i<k} hit_i * precision@(i + 1) / min(k, |R|); hit_rate@k = 1 if any hit in top k, else 0.
    Users with an empty `R` are left out of the means; when no user has one, every metric is nan.

    Args:
        top: `[users, max_k]` int item indices, best first, -1 marks an empty slot (never relevant).
        relevant: per user, a 1-D int array of relevant item indices (duplicates count once; may be empty).
        ks: list lengths; a `k` above `max_k` treats the missing positions as empty.
        prefix: prepended to every key.

    Returns:
        `{f"{prefix}{metric}_at_{k}": mean}` for every metric in `LIST_METRICS` and every `k`.
    """
    hits, counts = _hits(top, relevant, max(ks))
    valid = counts > 0
    metrics = {}
    for k in ks:
        for name, values in _scores(hits, counts, k).items():
            metrics[f"{prefix}{name}_at_{k}"] = float(values[valid].mean()) if valid.any() else float("nan")
    return metrics


def rating_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """`{"rmse": ..., "mae": ...}` of `[rows]` predictions against `[rows]` labels (`[rows, 1]` is flattened)."""
    errors = np.ravel(predictions).astype(np.float64) - np.ravel(labels).astype(np.float64)
    return {"rmse": float(np.sqrt(np.mean(errors**2))), "mae": float(np.mean(np.abs(errors)))}


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative `[n]` counts: 0 for equal counts, towards 1 when concentrated; nan if all 0.

    G = sum_i (2i - n - 1) x_i / (n * sum x), with x sorted ascending and i = 1..n.
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = x.size, x.sum()
    if total == 0:
        return float("nan")
    return float(((2 * np.arange(1, n + 1) - n - 1) * x).sum() / (n * total))


def beyond_accuracy(
    top: np.ndarray, num_items: int, popularity: np.ndarray, item_vectors: np.ndarray | None, k: int, prefix: str = ""
) -> dict[str, float]:
    """Figures of the lists themselves over the first `k` slots of every row, -1 (empty) slots ignored.

    coverage: distinct recommended items / `num_items`. gini: `gini` of the exposure counts of all `num_items` items
    (never recommended = 0). novelty: mean over recommended slots of -log2(p), p = popularity / popularity.sum(),
    with p = 1 / popularity.sum() for items of popularity 0. diversity: mean over users with >= 2 items of the mean
    pairwise (1 - cosine similarity) of their items' vectors (zero vectors have cosine 0 with everything).

    Args:
        top: `[users, max_k]` int item indices, best first, -1 marks an empty slot.
        num_items: size of the catalogue.
        popularity: `[num_items]` training interaction counts.
        item_vectors: `[num_items, dim]` item features or embeddings; None leaves diversity out.
        k: number of slots per list.
        prefix: prepended to every key.

    Returns:
        `{f"{prefix}{name}_at_{k}": value}` for coverage, gini, novelty and (with `item_vectors`) diversity.
    """
    slots = _pad(np.asarray(top, dtype=np.int64), k)
    valid = slots >= 0
    items = slots[valid]
    exposure = np.bincount(items, minlength=num_items)
    popularity = np.asarray(popularity, dtype=np.float64)
    p = np.where(popularity > 0, popularity, 1.0) / popularity.sum()
    metrics = {
        f"{prefix}coverage_at_{k}": np.count_nonzero(exposure) / num_items,
        f"{prefix}gini_at_{k}": gini(exposure),
        f"{prefix}novelty_at_{k}": float(-np.log2(p[items]).mean()) if items.size else float("nan"),
    }
    if item_vectors is not None:
        vectors = np.asarray(item_vectors, dtype=np.float64)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit = (vectors / np.where(norms > 0, norms, 1.0))[items]
        # Sum of cosines over ordered pairs i != j of a list = |sum of its unit vectors|^2 - sum of their |v|^2.
        owners = np.nonzero(valid)[0]
        summed = np.zeros((len(slots), vectors.shape[1]))
        np.add.at(summed, owners, unit)
        self_sims = np.bincount(owners, weights=(unit**2).sum(axis=1), minlength=len(slots))
        n = valid.sum(axis=1)
        lists = n >= 2
        pair_cos = ((summed**2).sum(axis=1) - self_sims)[lists] / (n * (n - 1))[lists]
        metrics[f"{prefix}diversity_at_{k}"] = float((1.0 - pair_cos).mean()) if lists.any() else float("nan")
    return metrics
