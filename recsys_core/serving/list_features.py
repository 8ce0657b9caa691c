"""What the list ranker knows about each candidate of a user's list: `[users, k, features]` from the kernel's state.

Every feature is computed from what the job holds when it scores a block (the
retrieval scores, the predicted ratings, the items' popularity as of the newest
interaction, the candidate-tower embeddings, the bundle's item-to-item factors and
the users' seen items), so the offline protocol and the job compute them alike, as
of the query time.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_core.data.activity import RECENT_WINDOWS_DAYS, ItemActivity
from recsys_core.serving.scoring import standardise

LIST_FEATURES = (
    "retrieval_z",  # retrieval score, z-scored over the list
    "retrieval_rank",  # log(1 + position in the retrieval order); log(1 + top_k) for the other sources
    "retrieved",  # 1 if the two towers' top-K holds it, 0 if only another source brought it
    "rating",  # predicted rating of the rating model (0 without one)
    "rating_z",  # the same, z-scored over the list
    "popularity",  # log(1 + popularity in the chosen window) of the candidate
    "popularity_z",  # the same, z-scored over the list
    "history_cosine_mean",  # mean cosine of the candidate with the user's last HISTORY_ITEMS items
    "history_cosine_max",  # the largest of those cosines
    "user_activity",  # log(1 + items the user has seen)
    "item_affinity",  # the candidate's item-to-item score from everything the user has seen (`ItemFactors`)
    "item_affinity_z",  # the same, z-scored over the list
    # log(1 + the candidate's interactions in the last 7 and 30 days up to the newest one), and all time
    *(f"popularity_{days}_days" for days in RECENT_WINDOWS_DAYS),
    "popularity_all_time",
    "trend",  # popularity in the shortest window minus in the next one: rising (near 0) or fading (negative)
    "item_age",  # log(1 + days since its first interaction)
    "user_recency",  # log(1 + days since the user's last interaction)
)
HISTORY_ITEMS = 10
# The re-ranker choices besides the bundle's rating signatures (`RecommendSettings.reranker`):
LIST_RANKER = "list"  # orders lists by the list ranker (also the name of its bundle signature)
NO_RERANKER = "none"  # keeps the retrieval order, with the popularity prior


@dataclasses.dataclass(frozen=True)
class ItemFactors:
    """Item-to-item weights `B [items, items]` (EASE's) in low rank: `B ~ sources @ targets.T`.

    A user's affinity to item `c` is `sum_h B[h, c]` over the items `h` they have seen,
    `(sum_h sources[h]) . targets[c]`: a `[rank]` vector per user, a dot product per candidate.

    Attributes:
        item_ids: `[items]` the ids of the rows (str).
        sources, targets: `[items, rank]` float32.
    """

    item_ids: np.ndarray
    sources: np.ndarray
    targets: np.ndarray

    def aligned(self, item_ids: pa.Array) -> ItemFactors:
        """The factors of `item_ids`, in their order; zero rows for ids these factors do not know."""
        known = pa.array(self.item_ids.astype(str), pa.string())
        rows = pc.fill_null(pc.index_in(pc.cast(item_ids, pa.string()), value_set=known), -1).to_numpy()
        take = np.maximum(rows, 0)
        mask = (rows >= 0)[:, None]
        ids = np.asarray(pc.cast(item_ids, pa.string()).to_pylist(), dtype=object)
        return ItemFactors(ids, np.where(mask, self.sources[take], 0.0), np.where(mask, self.targets[take], 0.0))

    def user_vectors(self, seen: list[np.ndarray]) -> np.ndarray:
        """`[users, rank]` the sum of the source rows of each user's distinct items (rows of these factors)."""
        vectors = np.zeros((len(seen), self.sources.shape[1]), np.float32)
        for row, items in enumerate(seen):
            if len(items):  # a sum per user: np.add.reduceat over the whole block is far slower (docs/benchmarks.md)
                vectors[row] = self.sources[np.unique(items)].sum(axis=0)
        return vectors

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, item_ids=self.item_ids.astype(str), sources=self.sources, targets=self.targets)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ItemFactors:
        with np.load(io.BytesIO(data)) as arrays:
            return cls(arrays["item_ids"].astype(object), arrays["sources"], arrays["targets"])


@dataclasses.dataclass(frozen=True)
class ListRankerInputs:
    """What the list ranker reads besides the kernel's own state (recorded in the bundle with it).

    Attributes:
        rating_model: the rating signature whose predictions it reads (None: none).
        item_factors: item-to-item factors (None: no affinity).
        extra_candidates: how many candidates each other source (the most popular unseen items in the
            window; the items of highest affinity) adds to the retrieval top-K before ranking.
    """

    rating_model: str | None = None
    item_factors: ItemFactors | None = None
    extra_candidates: int = 0


def merge_candidates(retrieved: np.ndarray, *others: np.ndarray) -> np.ndarray:
    """`[users, k + sum of the others' widths]` the retrieved candidates, then each other source's that are
    not already there, in order; -1 fills the rest of each row.

    Args:
        retrieved: `[users, k]` item indices, -1 empty; others: `[users, m]` each, alike.
    """
    merged = np.concatenate([retrieved, *others], axis=1)
    width = merged.shape[1]
    base = int(merged.max(initial=0)) + 1
    keys = np.where(merged >= 0, np.arange(len(merged))[:, None] * base + merged, -1)
    _, first = np.unique(keys.ravel(), return_index=True)
    keep = np.zeros(merged.size, bool)
    keep[first] = True
    keep &= keys.ravel() >= 0
    keep = keep.reshape(merged.shape)
    # Kept entries move left in their order: a stable sort on "dropped".
    order = np.argsort(~keep, axis=1, kind="stable")
    packed = np.take_along_axis(np.where(keep, merged, -1), order, axis=1)
    return packed[:, :width]


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """`[items, dim]` embeddings scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)


def candidate_features(
    candidates: np.ndarray,
    retrieval_scores: np.ndarray,
    ranking_scores: np.ndarray,
    activity: ItemActivity,
    unit_embeddings: np.ndarray,
    seen: list[np.ndarray],
    last_seen: np.ndarray,
    factors: ItemFactors | None = None,
    retrieved: int | None = None,
) -> np.ndarray:
    """The features of every candidate, in the order of `LIST_FEATURES`.

    Args:
        candidates: `[users, k]` item indices in retrieval order, -1 for empty slots.
        retrieval_scores: `[users, k]`; ranking_scores: `[users, k]` predicted ratings, NaN where none.
        activity: the index's items' popularity and age, as of the newest interaction (`ItemActivity`).
        unit_embeddings: `[items, dim]` unit-length candidate-tower embeddings (`unit_rows`).
        seen: per user, the item indices they interacted with, most recent last.
        last_seen: `[users]` time of each user's last interaction (seconds), -1 if none.
        factors: the index's item-to-item factors (rows aligned with the items); None: affinity 0.
        retrieved: the first `retrieved` columns are the two towers' top-K (default: every column).

    Returns:
        `[users, k, len(LIST_FEATURES)]` float32, 0 at empty slots.
    """
    valid = candidates >= 0
    items = np.maximum(candidates, 0)
    rated = valid & ~np.isnan(ranking_scores)
    rating = np.where(rated, ranking_scores, 0.0)
    log_popularity = np.log1p(np.maximum(activity.popularity[items], 0.0))
    log_recent = np.log1p(activity.recent[items])  # [users, k, windows + all time]
    age = np.log1p(activity.age_days()[items])
    recency = np.broadcast_to(np.log1p(activity.days_since(last_seen))[:, None], candidates.shape)
    retrieved = candidates.shape[1] if retrieved is None else retrieved
    columns = np.arange(candidates.shape[1])
    positions = np.broadcast_to(np.log1p(np.minimum(columns, retrieved).astype(np.float64)), candidates.shape)
    from_towers = np.broadcast_to((columns < retrieved).astype(np.float64), candidates.shape)
    recent = np.full((len(seen), HISTORY_ITEMS), -1, np.int64)
    for row, items_seen in enumerate(seen):
        last = items_seen[-HISTORY_ITEMS:]
        recent[row, : len(last)] = last
    has = recent >= 0
    cosines = np.einsum("uhd,ukd->uhk", unit_embeddings[np.maximum(recent, 0)], unit_embeddings[items])
    counts = has.sum(axis=1)[:, None]
    mean = np.where(counts > 0, (cosines * has[:, :, None]).sum(axis=1) / np.maximum(counts, 1), 0.0)
    largest = np.where(counts > 0, np.where(has[:, :, None], cosines, -np.inf).max(axis=1, initial=-np.inf), 0.0)
    activity = np.broadcast_to(np.log1p([len(s) for s in seen])[:, None], candidates.shape)
    affinity = np.zeros(candidates.shape, np.float32)
    if factors is not None:
        affinity = np.einsum("ur,ukr->uk", factors.user_vectors(seen), factors.targets[items])
    columns = (
        standardise(retrieval_scores, valid),
        positions,
        from_towers,
        rating,
        standardise(ranking_scores, rated),
        log_popularity,
        standardise(log_popularity, valid),
        mean,
        largest,
        activity,
        affinity,
        standardise(affinity, valid),
        *(log_recent[..., column] for column in range(len(RECENT_WINDOWS_DAYS) + 1)),
        log_recent[..., 0] - log_recent[..., 1],
        age,
        recency,
    )
    features = np.stack(columns, axis=-1).astype(np.float32)
    return np.where(valid[:, :, None], features, 0.0).astype(np.float32)
