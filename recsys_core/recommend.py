"""Beam-free batch recommendation: a loaded bundle turns blocks of users into ranked rows.

The Beam job (`jobs/`) only moves blocks between these functions; tests and
benchmarks call them directly.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf

from recsys_core import outputs
from recsys_core.data.tables import group_by_user
from recsys_core.export import load_bundle, read_text
from recsys_core.features.schema import ITEM_FEATURES, USER_FEATURES, feature_arrays, query_arrays
from recsys_core.scoring import rerank, top_k_popular_unseen, top_k_unseen

MODEL_SOURCE = "model"
FALLBACK_SOURCE = "popularity_fallback"
_BATCH = 8192


class BundleScorer:
    """The signatures of one model bundle, called on numpy feature dicts."""

    def __init__(self, bundle: str) -> None:
        self.manifest, self._model = load_bundle(bundle)
        vocabulary = json.loads(read_text(os.path.join(self.manifest["path"], "vocabulary.json")))
        self._user_ids = pa.array(vocabulary["user_ids"], pa.string())
        self.version = self.manifest["bundle_version"]

    def _call(self, signature: str, arrays: dict[str, np.ndarray], output: str) -> np.ndarray:
        function = self._model.signatures[signature]
        num_rows = len(next(iter(arrays.values())))
        parts = [
            function(**{name: tf.constant(values[start : start + _BATCH]) for name, values in arrays.items()})[output]
            for start in range(0, num_rows, _BATCH)
        ]
        return np.concatenate([p.numpy() for p in parts]) if parts else np.zeros((0,), np.float32)

    def embed_items(self, items: pa.Table) -> np.ndarray:
        """`[items, dim]` candidate-tower embeddings."""
        return self._call("candidate_embedding", feature_arrays(items, ITEM_FEATURES), "embedding")

    def embed_users(self, users: pa.Table, timestamp: int) -> np.ndarray:
        """`[users, dim]` query-tower embeddings at `timestamp` (seconds)."""
        return self._call("query_embedding", query_arrays(users, np.full(users.num_rows, timestamp)), "embedding")

    def rate(self, reranker: str, users: pa.Table, items: pa.Table, timestamp: int) -> np.ndarray:
        """`[rows]` predicted ratings of row-aligned user and item tables."""
        arrays = {**query_arrays(users, np.full(users.num_rows, timestamp)), **feature_arrays(items, ITEM_FEATURES)}
        return self._call(reranker, arrays, "rating")

    def known_users(self, user_ids: pa.Array) -> np.ndarray:
        """`[users]` bool: the bundle has an embedding of its own for this id (not OOV)."""
        return pc.is_in(user_ids, value_set=self._user_ids).to_numpy(zero_copy_only=False)


@dataclasses.dataclass
class ItemIndex:
    """All items with their embeddings and popularity, shared by every user block.

    Attributes:
        items: the items table (`ITEMS_SCHEMA`), row i is item index i.
        embeddings: `[items, dim]` float32.
        popularity: `[items]` interaction counts, for the fallback.
    """

    items: pa.Table
    embeddings: np.ndarray
    popularity: np.ndarray


@dataclasses.dataclass
class UserBlock:
    """A block of users scored together: one Beam element.

    Attributes:
        users: rows of the users table.
        seen: per user, the item indices they already interacted with.
    """

    users: pa.Table
    seen: list[np.ndarray]

    def to_table(self) -> pa.Table:
        """The users table with a `seen_items` list<int64> column, for staging as Parquet."""
        return self.users.append_column("seen_items", pa.array([s.tolist() for s in self.seen], pa.list_(pa.int64())))

    @classmethod
    def from_table(cls, table: pa.Table) -> UserBlock:
        seen = [np.asarray(s, np.int64) for s in table["seen_items"].to_pylist()]
        return cls(table.drop_columns(["seen_items"]), seen)


@dataclasses.dataclass(frozen=True)
class RecommendSettings:
    top_k: int
    final_k: int
    reranker: str  # a rating signature of the bundle, or "none"
    timestamp: int  # query time, seconds
    run_id: str


def build_item_index(scorer: BundleScorer, items: pa.Table, popularity: np.ndarray) -> ItemIndex:
    """Embeds every item; `popularity` `[items]` orders the fallback."""
    return ItemIndex(items, scorer.embed_items(items), popularity)


def user_blocks(users: pa.Table, ratings: pa.Table, items: pa.Table, block_size: int) -> list[UserBlock]:
    """Splits users into blocks, each user with the item indices of all their ratings."""
    seen = [np.unique(rated) for rated in group_by_user(ratings, users["user_id"], items["movie_id"])[0]]
    return [
        UserBlock(users.slice(start, block_size), seen[start : start + block_size])
        for start in range(0, users.num_rows, block_size)
    ]


def recommend_block(
    scorer: BundleScorer, block: UserBlock, index: ItemIndex, settings: RecommendSettings
) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    """Top-K unseen items per user by the two towers, re-ranked, cut to `final_k`.

    Users the model cannot serve (an id unknown to the bundle, or no history)
    get the most popular unseen items, labelled `popularity_fallback`.

    Returns:
        recommendations (`outputs.RECOMMENDATIONS_SCHEMA`), user embeddings
        (`outputs.USER_EMBEDDINGS_SCHEMA`), and counts for Beam counters.
    """
    user_ids = block.users["user_id"].combine_chunks()
    queries = scorer.embed_users(block.users, settings.timestamp)
    retrieval_scores, candidates = top_k_unseen(queries, index.embeddings, block.seen, settings.top_k)
    servable = scorer.known_users(user_ids) & np.array([len(s) > 0 for s in block.seen], dtype=bool)
    fallback = ~servable
    if fallback.any():
        seen = [s for s, unserved in zip(block.seen, fallback, strict=True) if unserved]
        retrieval_scores[fallback], candidates[fallback] = top_k_popular_unseen(index.popularity, seen, settings.top_k)
    ranking_scores = np.full(candidates.shape, np.nan, np.float32)
    if settings.reranker != "none":
        rows, cols = np.nonzero(servable[:, None] & (candidates >= 0))
        ranking_scores[rows, cols] = scorer.rate(
            settings.reranker,
            block.users.select(list(USER_FEATURES)).take(pa.array(rows)),
            index.items.take(pa.array(candidates[rows, cols])),
            settings.timestamp,
        )
    order = rerank(candidates, np.nan_to_num(ranking_scores, nan=-np.inf), retrieval_scores, settings.final_k)
    chosen = np.take_along_axis(candidates, order, axis=1)
    rows, ranks = np.nonzero(chosen >= 0)
    item_rows = chosen[rows, ranks]
    recommendations = outputs.recommendations_table(
        user_ids=user_ids.take(pa.array(rows)),
        ranks=ranks + 1,
        item_ids=index.items["movie_id"].take(pa.array(item_rows)),
        retrieval_scores=np.take_along_axis(retrieval_scores, order, axis=1)[rows, ranks],
        ranking_scores=np.take_along_axis(ranking_scores, order, axis=1)[rows, ranks],
        sources=np.where(fallback[rows], FALLBACK_SOURCE, MODEL_SOURCE),
        model_version=scorer.version,
        run_id=settings.run_id,
    )
    embeddings = outputs.embeddings_table(outputs.USER_EMBEDDINGS_SCHEMA, user_ids, queries, scorer.version)
    counts = {
        "users_scored": int(servable.sum()),
        "fallback_users": int(fallback.sum()),
        "items_excluded": int(sum(len(s) for s in block.seen)),
        "users_short_of_final_k": int((np.bincount(rows, minlength=len(user_ids)) < settings.final_k).sum()),
    }
    return recommendations, embeddings, counts


def similar_items(index: ItemIndex, k: int, model_version: str) -> pa.Table:
    """Each item's `k` nearest items by cosine similarity of candidate-tower embeddings (itself excluded)."""
    norms = np.linalg.norm(index.embeddings, axis=1, keepdims=True)
    unit = index.embeddings / np.maximum(norms, 1e-12)
    scores, neighbours = top_k_unseen(unit, unit, [np.array([i]) for i in range(len(unit))], k)
    rows, ranks = np.nonzero(neighbours >= 0)
    ids = index.items["movie_id"].combine_chunks()
    return outputs.similar_items_table(
        ids.take(pa.array(rows)),
        ranks + 1,
        ids.take(pa.array(neighbours[rows, ranks])),
        scores[rows, ranks],
        model_version,
    )
