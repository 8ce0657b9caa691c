"""Offline evaluation of the lists the job ships, and of the rating models.

The lists are made by the job's own kernel (`recommend.recommend_block`, with
its query-time policy, re-ranker, blend weight and `final_k`) from a loaded
bundle, given the interactions the job would see (the training split), and
scored against held-out interactions. Baselines go through the same metric code.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core.data.activity import ALL_TIME, ItemActivity, item_activity
from recsys_core.data.tables import InteractionData, group_by_user
from recsys_core.evaluation import baselines, metrics
from recsys_core.schema import ITEM_ID, RATING, USER_ID, FeatureSchema
from recsys_core.serving.recommend import (
    BundleScorer,
    RecommendSettings,
    build_item_index,
    candidate_lists,
    recommend_blocks,
    user_blocks,
)
from recsys_core.serving.scoring import top_k_popular_unseen

Embed = Callable[[dict[str, tf.Tensor]], tf.Tensor]
LIKED_RATING = 4.0  # the second relevance definition: held-out items rated at least this
LIST_KS = (10, 20, 100)
CURVE_KS = (1, 5, 10, 20, 50, 100)
HISTORY_GROUPS = ("with_history", "without_history")  # users with and without interactions in `seen`
# Training-popularity bins (interaction counts, inclusive upper bounds) of the exposure figures.
POPULARITY_BINS = {"1-10": 10, "11-50": 50, "51-100": 100, "101-200": 200, "201+": np.inf}


def tensor_batches(arrays: dict[str, np.ndarray], batch_size: int = 4096) -> list[dict[str, tf.Tensor]]:
    """Row batches of `arrays` as dicts of tensors."""
    num_rows = len(next(iter(arrays.values())))
    return [
        {name: tf.constant(values[start : start + batch_size]) for name, values in arrays.items()}
        for start in range(0, num_rows, batch_size)
    ]


def batched(fn: Embed, arrays: dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """Applies `fn` to row batches of `arrays` and concatenates the numpy results."""
    outputs = [fn(batch).numpy() for batch in tensor_batches(arrays, batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """One evaluation protocol: what the job sees, whom it serves, what counts as a hit.

    Attributes:
        seen: the interactions the job is given (the training split, or its fitting part).
        user_ids: `[users]` the users with at least one held-out interaction.
        relevant: per user, indices into `seen.items` of every held-out item.
        liked: per user, the held-out items rated at least `LIKED_RATING`.
    """

    seen: InteractionData
    user_ids: pa.Array
    relevant: list[np.ndarray]
    liked: list[np.ndarray]

    @classmethod
    def build(cls, seen: InteractionData, held_out: InteractionData) -> HeldOut:
        items = seen.items[ITEM_ID]
        user_ids = pc.unique(held_out.ratings[USER_ID].combine_chunks())
        relevant, _ = group_by_user(held_out.ratings, user_ids, items)
        liked_ratings = held_out.ratings.filter(pc.greater_equal(held_out.ratings[RATING], LIKED_RATING))
        liked, _ = group_by_user(liked_ratings, user_ids, items)
        return cls(seen, user_ids, relevant, liked)

    @functools.cached_property
    def item_cooccurrence(self) -> np.ndarray:
        """`[items, items]` X^T X of every user in `seen`: EASE's input, the same for every λ tried."""
        items = self.seen.items[ITEM_ID]
        everyone, _ = group_by_user(self.seen.ratings, self.seen.users[USER_ID], items)
        return baselines.item_cooccurrence(everyone, len(items))

    @functools.cached_property
    def seen_items(self) -> list[np.ndarray]:
        """Per user, the item indices of their interactions in `seen` (what every list excludes)."""
        return group_by_user(self.seen.ratings, self.user_ids, self.seen.items[ITEM_ID])[0]

    @functools.cached_property
    def has_history(self) -> np.ndarray:
        """`[users]` bool: the user has interactions in `seen` (else the job serves its fallback)."""
        return np.array([len(items) > 0 for items in self.seen_items], dtype=bool)

    @functools.cached_property
    def _activity_by_window(self) -> dict[float, ItemActivity]:
        return {}

    def activity_in(self, window_days: float) -> ItemActivity:
        """The items' activity in `seen` with the popularity of a `window_days` window (`activity.item_activity`),
        as the job computes it from the same rows; kept per window."""
        by_window = self._activity_by_window
        if window_days not in by_window:
            by_window[window_days] = item_activity(self.seen.ratings, self.seen.items[ITEM_ID], window_days)
        return by_window[window_days]

    def popularity_in(self, window_days: float) -> np.ndarray:
        """`[items]` popularity in the last `window_days` days of `seen` (`activity.item_popularity`)."""
        return self.activity_in(window_days).popularity

    @property
    def popularity(self) -> np.ndarray:
        """`[items]` interaction counts in `seen` (all time: the exposure figures' bins)."""
        return self.popularity_in(ALL_TIME)


class JobLists:
    """The job's lists for the held-out users, for any `RecommendSettings`.

    Runs exactly what a Beam worker runs, `user_blocks` -> `recommend_block` (several blocks at a time). The
    users are grouped into blocks and the items embedded once, so that trying many
    settings (the validation grid) only repeats the per-block kernel.
    """

    def __init__(
        self, scorer: BundleScorer, held_out: HeldOut, window_days: float = ALL_TIME, block_size: int = 1024
    ) -> None:
        """`window_days`: the popularity window of the fallback and the prior, as the job's."""
        data = held_out.seen
        users = data.users.take(pc.index_in(held_out.user_ids, value_set=data.users[USER_ID].combine_chunks()))
        self._scorer = scorer
        self._held_out = held_out
        self._blocks = user_blocks(users, data.ratings, data.items, block_size)
        self._index = build_item_index(scorer, data.items, held_out.activity_in(window_days))

    def __call__(self, settings: RecommendSettings, scorer: BundleScorer | None = None) -> np.ndarray:
        """`[users, final_k]` item indices into `seen.items`, -1 empty (`scorer`: another one of the same bundle,
        e.g. with a list ranker of its own)."""
        blocks = recommend_blocks(scorer or self._scorer, self._blocks, self._index, settings)
        tables = [rows for rows, _, _ in blocks]
        items = self._held_out.seen.items[ITEM_ID]
        return rows_to_lists(pa.concat_tables(tables), self._held_out.user_ids, items, settings.final_k)

    def candidates(self, settings: RecommendSettings) -> tuple[np.ndarray, np.ndarray]:
        """What the job's list ranker would order, per held-out user (in `user_ids` order): candidates
        `[users, width]` (-1 empty; the retrieval top-K and the other sources', `recommend.CandidateLists`) and
        their features `[users, width, features]`; users served by the popularity fallback have no candidates."""
        candidates, features = [], []
        for block in self._blocks:
            lists = candidate_lists(self._scorer, block, self._index, settings)
            candidates.append(np.where(lists.servable[:, None], lists.candidates, -1))
            features.append(lists.features(self._index, block, np.arange(len(block.seen))))
        return np.concatenate(candidates), np.concatenate(features)


def rows_to_lists(recommendations: pa.Table, user_ids: pa.Array, item_ids, width: int) -> np.ndarray:
    """`recommendations` rows (user_id, rank, item_id) -> `[len(user_ids), width]` item indices, -1 empty."""
    top = np.full((len(user_ids), width), -1, np.int64)
    rows = pc.index_in(recommendations["user_id"], value_set=user_ids).to_numpy()
    ranks = recommendations["rank"].to_numpy() - 1
    items = pc.index_in(recommendations["item_id"], value_set=pa.chunked_array(item_ids).combine_chunks())
    top[rows, ranks] = items.to_numpy()
    return top


def popular_lists(held_out: HeldOut, k: int, window_days: float = ALL_TIME) -> np.ndarray:
    """Most popular unseen items `[users, k]` (in the last `window_days` days): the job's fallback kernel."""
    return top_k_popular_unseen(held_out.popularity_in(window_days), held_out.seen_items, k)[1]


def ease_lists(held_out: HeldOut, l2: float, k: int) -> np.ndarray:
    """EASE top-k with seen items excluded, `[users, k]`."""
    weights = baselines.ease_item_weights(held_out.item_cooccurrence, l2)
    return baselines.ease_top_k(held_out.seen_items, weights, k)[1]


def list_figures(top: np.ndarray, held_out: HeldOut, beyond_k: int = 20) -> dict[str, float]:
    """Every list metric of `top` `[users, k]` at every k it covers, both relevance definitions, and the
    beyond-accuracy figures of its first `beyond_k` slots."""
    ks = tuple(sorted(k for k in set(LIST_KS + CURVE_KS) if k <= top.shape[1]))
    items = held_out.seen.items
    return {
        **metrics.list_metrics(top, held_out.relevant, ks),
        **metrics.list_metrics(top, held_out.liked, ks, prefix="rel4_"),
        **metrics.beyond_accuracy(
            top,
            items.num_rows,
            held_out.popularity,
            category_vectors(items, held_out.seen.schema),
            min(beyond_k, top.shape[1]),
        ),
        **popularity_shares(top[:, :beyond_k], held_out.popularity),
    }


def figures_by_history(top: np.ndarray, held_out: HeldOut) -> dict[str, dict[str, float]]:
    """The accuracy figures of `top` `[users, k]` (both relevance definitions) over the users with
    training history and over those without, each with its `users` count (no group without users)."""
    ks = tuple(sorted(k for k in set(LIST_KS + CURVE_KS) if k <= top.shape[1]))
    groups = {}
    for name, members in zip(HISTORY_GROUPS, (held_out.has_history, ~held_out.has_history), strict=True):
        rows = np.flatnonzero(members)
        if len(rows):
            groups[name] = {
                "users": len(rows),
                **metrics.list_metrics(top[rows], [held_out.relevant[i] for i in rows], ks),
                **metrics.list_metrics(top[rows], [held_out.liked[i] for i in rows], ks, prefix="rel4_"),
            }
    return groups


def popularity_shares(top: np.ndarray, popularity: np.ndarray) -> dict[str, float]:
    """Share of the recommended slots of `top` `[users, k]` whose item's training count falls in each bin.

    Items never seen in training count in the first bin.
    """
    counts = popularity[top[top >= 0]]
    bounds = np.array(list(POPULARITY_BINS.values()))
    bins = np.searchsorted(bounds, counts, side="left")
    shares = np.bincount(bins, minlength=len(bounds)) / max(len(counts), 1)
    return {f"popularity_share_{label}": float(share) for label, share in zip(POPULARITY_BINS, shares, strict=True)}


def category_vectors(items: pa.Table, schema: FeatureSchema) -> np.ndarray | None:
    """`[items, values]` one-hot vectors of the schema's first categorical item feature (MovieLens: genres).

    The item space of intra-list diversity; None (no diversity figure) if the items have no categories.
    """
    feature = next((f for f in schema.of("item") if f.kind in ("categorical", "multi_categorical")), None)
    if feature is None:
        return None
    column = items[feature.name]
    lists = column.to_pylist() if feature.kind == "multi_categorical" else [[v] for v in column.to_pylist()]
    values = {value: i for i, value in enumerate(sorted({v for row in lists for v in row}, key=str))}
    vectors = np.zeros((items.num_rows, len(values)), np.float32)
    for row, categories in enumerate(lists):
        vectors[row, [values[v] for v in categories]] = 1.0
    return vectors


def rating_figures(predictions: np.ndarray, labels: np.ndarray, train_mean: float) -> dict[str, float]:
    """RMSE and MAE, with the global-mean RMSE beside them."""
    figures = metrics.rating_metrics(predictions, labels)
    figures["global_mean_rmse"] = metrics.rating_metrics(np.full_like(labels, train_mean), labels)["rmse"]
    return figures


def factorized_top_k(
    query_tower: Embed,
    candidate_tower: Embed,
    item_embeddings: np.ndarray,
    item_ids: np.ndarray,
    batches: list[dict[str, tf.Tensor]],
    ks: tuple[int, ...],
) -> dict[str, float]:
    """TFRS `FactorizedTopK` accuracy of each held-out rating's item among all items, as the tutorials report."""
    index = tfrs.layers.factorized_top_k.BruteForce(k=max(ks))
    index.index(tf.constant(item_embeddings), identifiers=tf.constant(item_ids))
    metric = tfrs.metrics.FactorizedTopK(candidates=index, ks=ks)
    for batch in batches:
        metric.update_state(query_tower(batch), candidate_tower(batch), true_candidate_ids=batch[ITEM_ID])
    return {f"factorized_top_{k}": float(value) for k, value in zip(ks, metric.result(), strict=True)}
