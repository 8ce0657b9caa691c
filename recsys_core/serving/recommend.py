"""Beam-free batch recommendation: a loaded bundle turns blocks of users into ranked rows.

The Beam job (`jobs/`) only moves blocks between these functions; tests and
benchmarks call them directly.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import tensorflow as tf

from recsys_core.bundle import ITEM_FACTORS, VOCABULARY, load_bundle, read_bytes, read_text
from recsys_core.data.activity import ItemActivity
from recsys_core.data.tables import group_by_user
from recsys_core.features.arrays import feature_arrays, item_inputs, query_arrays, string_bytes
from recsys_core.features.history import history_matrix
from recsys_core.schema import ITEM_ID, USER_ID, FeatureSchema
from recsys_core.serving import outputs
from recsys_core.serving.ann import ScannConfig, ScannIndex, recall
from recsys_core.serving.blocks_in_flight import BlocksInFlight
from recsys_core.serving.list_features import (
    LIST_RANKER,
    NO_RERANKER,
    ItemFactors,
    ListRankerInputs,
    candidate_features,
    merge_candidates,
    unit_rows,
)
from recsys_core.serving.scoring import NEG_INF, ExactIndex, blend, rerank, top_k_popular_unseen, top_k_unseen

MODEL_SOURCE = "model"
FALLBACK_SOURCE = "popularity_fallback"
_SOURCES = pa.array([MODEL_SOURCE, FALLBACK_SOURCE], pa.string())  # indexed by "is a fallback"
_BATCH = 8192
_CACHE_LOCK = threading.RLock()
_CANDIDATE_ROWS = 512  # users per call of a `<re-ranker>_candidates` or `list_ranker` signature


class BundleScorer:
    """The signatures of one model bundle, called on numpy feature dicts.

    Every signature is fed exactly the inputs its manifest entry names, so rating
    signatures that do not read the history never receive it.
    """

    def __init__(self, bundle: str) -> None:
        self.manifest, self._model = load_bundle(bundle)
        self.schema = self.manifest.schema
        vocabulary = json.loads(read_text(os.path.join(self.manifest.path, VOCABULARY)))
        self._user_ids = frozenset(vocabulary["user_ids"])  # one hash set, not one per block
        self.version = self.manifest.bundle_version
        self.history_length = self.manifest.query_policy.history_length
        # Re-rankers rated from per-user and per-item states (older bundles have none: rated pair by pair).
        self.pair_states = {name for name in self.manifest.signatures if name.endswith("_candidates")}
        recorded = self.manifest.list_ranker
        factors = os.path.join(self.manifest.path, ITEM_FACTORS)
        self.list_inputs = ListRankerInputs(
            recorded.rating_model if recorded else None,
            ItemFactors.from_bytes(read_bytes(factors)) if tf.io.gfile.exists(factors) else None,
            recorded.extra_candidates if recorded else 0,
        )
        self._list_ranker: Callable[[np.ndarray], np.ndarray] | None = None

    def with_list_ranker(
        self, inputs: ListRankerInputs, ranker: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> BundleScorer:
        """This scorer with a list ranker not (yet) in its bundle, and its `inputs`:
        `ranker([users, k, features]) -> [users, k]` (None: only its features are computed)."""
        scorer = copy.copy(self)
        scorer._list_ranker, scorer.list_inputs = ranker, inputs
        return scorer

    def rank_lists(self, features: np.ndarray) -> np.ndarray:
        """`[users, k]` list-ranker scores of candidate features `[users, k, features]`."""
        if self._list_ranker is not None:
            return self._list_ranker(features)
        function = self._model.signatures[LIST_RANKER]
        parts = [
            function(features=tf.constant(features[start : start + _CANDIDATE_ROWS]))["score"].numpy()
            for start in range(0, len(features), _CANDIDATE_ROWS)
        ]
        return np.concatenate(parts) if parts else np.zeros(features.shape[:2], np.float32)

    def _call(self, signature: str, arrays: dict[str, np.ndarray], output: str) -> np.ndarray:
        function = self._model.signatures[signature]
        names = self.manifest.signatures[signature].inputs
        num_rows = len(next(iter(arrays.values())))
        parts = [
            function(**{name: tf.constant(arrays[name][start : start + _BATCH]) for name in names})[output]
            for start in range(0, num_rows, _BATCH)
        ]
        return np.concatenate([p.numpy() for p in parts]) if parts else np.zeros((0,), np.float32)

    def embed_items(self, items: pa.Table) -> np.ndarray:
        """`[items, dim]` candidate-tower embeddings."""
        return self._call("candidate_embedding", self.item_arrays(items), "embedding")

    def item_arrays(self, items: pa.Table) -> dict[str, np.ndarray]:
        """Every item-side input of the bundle's signatures, for the rows of `items`."""
        return feature_arrays(items, self.schema, item_inputs(self.schema))

    def embed_users(self, queries: dict[str, np.ndarray]) -> np.ndarray:
        """`[users, dim]` query-tower embeddings of `query_arrays` inputs."""
        return self._call("query_embedding", queries, "embedding")

    def rate_candidates(
        self, reranker: str, queries: dict[str, np.ndarray], users: np.ndarray, candidates: np.ndarray, index: ItemIndex
    ) -> np.ndarray:
        """`[len(users), k]` predicted ratings of each user's candidates `[len(users), k]` (NaN where -1).

        `users` are rows of `queries`. A bundle with the re-ranker's state signatures
        (`export._state_signatures`) rates from a state per user and a state per item
        (computed once per index); otherwise every pair's raw features go through the
        rating signature.
        """
        ratings = np.full(candidates.shape, np.nan, np.float32)
        if f"{reranker}_candidates" in self.pair_states:
            user_state = self._call(f"{reranker}_user_state", {n: v[users] for n, v in queries.items()}, "state")
            item_state = index.cached(f"{reranker}_item_state", lambda: self._item_state(reranker, index.items))
            rate = self._model.signatures[f"{reranker}_candidates"]
            for start in range(0, len(users), _CANDIDATE_ROWS):
                stop = start + _CANDIDATE_ROWS
                part = rate(
                    user_state=tf.constant(user_state[start:stop]),
                    item_state=item_state,
                    candidates=tf.constant(candidates[start:stop]),
                )["rating"].numpy()
                ratings[start:stop] = np.where(candidates[start:stop] >= 0, part, np.nan)
            return ratings
        rows, columns = np.nonzero(candidates >= 0)
        needed = self.manifest.signatures[reranker].inputs
        pair_users = {name: queries[name][users[rows]] for name in needed if name in queries}
        items = self.item_arrays(index.items.take(pa.array(candidates[rows, columns])))
        ratings[rows, columns] = self._call(reranker, {**pair_users, **items}, "rating")
        return ratings

    def _item_state(self, reranker: str, items: pa.Table) -> tf.Tensor:
        return tf.constant(self._call(f"{reranker}_item_state", self.item_arrays(items), "state"))

    def known_users(self, user_ids: pa.Array) -> np.ndarray:
        """`[users]` bool: the bundle has an embedding of its own for this id (not OOV)."""
        return np.array([user_id in self._user_ids for user_id in user_ids.to_pylist()], dtype=bool)


@dataclasses.dataclass
class ItemIndex:
    """All items with their embeddings and activity, shared by every user block.

    Attributes:
        items: the items table (the bundle schema's), row i is item index i.
        embeddings: `[items, dim]` float32.
        activity: the items' popularity (the fallback's order) and age, as of the newest interaction.
        factors: the bundle's item-to-item factors, rows aligned with `items` (None without).
    """

    items: pa.Table
    embeddings: np.ndarray
    activity: ItemActivity
    factors: ItemFactors | None = None
    _cache: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def cached(self, key, make):
        """`make()`, computed once per index (and worker): prepared item matrices, item states."""
        with _CACHE_LOCK:  # blocks scored in threads (`recommend_blocks`) share the index
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]

    @property
    def popularity(self) -> np.ndarray:
        """`[items]` the order of the fallback and the popularity prior (`ItemActivity.popularity`)."""
        return self.activity.popularity

    @functools.cached_property
    def unit_embeddings(self) -> np.ndarray:
        """`[items, dim]` the embeddings at unit length (the list ranker's history cosines)."""
        return unit_rows(self.embeddings)

    @functools.cached_property
    def id_bytes(self) -> np.ndarray:
        """`[items]` object array of the item ids as bytes (history inputs)."""
        return string_bytes(self.items[ITEM_ID])


@dataclasses.dataclass
class UserBlock:
    """A block of users scored together: one Beam element.

    Attributes:
        users: rows of the users table.
        seen: per user, the item indices they already interacted with, oldest first.
        last_seen: `[users]` time of each user's last interaction (seconds), -1 if none.
    """

    users: pa.Table
    seen: list[np.ndarray]
    last_seen: np.ndarray


@dataclasses.dataclass(frozen=True)
class RecommendSettings:
    """How a block is scored.

    Attributes:
        top_k: retrieval depth; final_k: rows kept per user.
        reranker: a rating signature of the bundle, `LIST_RANKER` or `NO_RERANKER`.
        blend_weight: weight of the re-ranker in the final order (see `scoring.blend`);
            1 orders by predicted rating alone, 0 keeps the retrieval order.
        popularity_weight: weight of the items' training popularity in the final order.
        item_shard_size: score the items in shards of at most this many (None: all at
            once); the lists are the same, the score matrix `[block, shard]` smaller.
        index: "exact" (`scoring.ExactIndex`) or "scann" (`ann.ScannIndex`, approximate).
        scann: ScaNN's settings, with `index="scann"`.
        recall_sample_every: with ScaNN, every this-many-th user of a block is also
            retrieved exactly, and the overlap counted (`recall_hits` of `recall_relevant`).
        timestamp: the run date (seconds): the query time of users without history.
        run_id: written into every row.
    """

    top_k: int
    final_k: int
    reranker: str
    timestamp: int
    run_id: str
    blend_weight: float = 1.0
    popularity_weight: float = 0.0
    item_shard_size: int | None = None
    index: str = "exact"
    scann: ScannConfig = ScannConfig()
    recall_sample_every: int = 100


def build_item_index(scorer: BundleScorer, items: pa.Table, activity: ItemActivity | None = None) -> ItemIndex:
    """Embeds every item (and aligns the bundle's item factors with them); `activity` (default: none yet) orders
    the fallback."""
    factors = scorer.list_inputs.item_factors
    activity = activity or ItemActivity.none(items.num_rows)
    return ItemIndex(items, scorer.embed_items(items), activity, factors and factors.aligned(items[ITEM_ID]))


def user_blocks(
    users: pa.Table, ratings: pa.Table, items: pa.Table, block_size: int, max_seen: int | None = None
) -> list[UserBlock]:
    """Splits users into blocks, each user with their rated items (oldest first) and last rating time.

    A block holds at most `block_size` users and, with `max_seen`, at most that many
    seen items in all (a block always takes at least one user): heavy users make
    smaller blocks instead of larger ones.
    """
    rated, times = group_by_user(ratings, users[USER_ID], items[ITEM_ID])
    seen = _distinct_keep_last(rated)
    last_seen = np.array([t.max() if len(t) else -1 for t in times], dtype=np.int64)
    blocks, start = [], 0
    while start < users.num_rows:
        stop = min(start + block_size, users.num_rows)
        if max_seen is not None:
            cumulative = np.cumsum([len(s) for s in seen[start:stop]])
            stop = start + max(1, int(np.searchsorted(cumulative, max_seen, side="right")))
        blocks.append(UserBlock(users.slice(start, stop - start), seen[start:stop], last_seen[start:stop]))
        start = stop
    return blocks


def _distinct_keep_last(lists: list[np.ndarray]) -> list[np.ndarray]:
    """Each list's distinct items in order of their last occurrence, for all lists at once."""
    if not lists:
        return []
    owners = np.repeat(np.arange(len(lists)), [len(items) for items in lists])
    flat = np.concatenate([np.zeros(0, np.int64), *lists])
    keys = owners * (int(flat.max(initial=0)) + 1) + flat
    _, first_from_the_end = np.unique(keys[::-1], return_index=True)
    last = np.zeros(len(flat), bool)
    last[len(flat) - 1 - first_from_the_end] = True
    counts = np.bincount(owners[last], minlength=len(lists))
    return np.split(flat[last], np.cumsum(counts)[:-1])


def query_inputs(
    block: UserBlock, index: ItemIndex, schema: FeatureSchema, run_timestamp: int, history_length: int
) -> dict[str, np.ndarray]:
    """The query-time policy, shared by the job and the offline evaluation.

    Each user is queried at the time of their last interaction (the run date for
    users without any), with their last `history_length` items as history: the
    same inputs the model saw for that user in training, whatever the run date.
    """
    times = np.where(block.last_seen >= 0, block.last_seen, run_timestamp)
    return query_arrays(block.users, schema, times, history_matrix(block.seen, index.id_bytes, history_length))


@dataclasses.dataclass
class CandidateLists:
    """A block's candidates before their final order.

    Attributes:
        query: the query tower's inputs (`query_inputs`); embeddings: `[users, dim]` its outputs.
        candidates: `[users, width]` item indices, -1 empty: the retrieval top-K in its order (the first
            `retrieved` columns), then, for the list ranker, the other sources' (`merge_candidates`).
        retrieval_scores: `[users, width]` (popularity for fallback users).
        ranking_scores: `[users, width]` predicted ratings, NaN where none.
        servable: `[users]` bool, served by the model (else by the popularity fallback).
        recall_counts: ScaNN's sampled `(hits, relevant)`.
        retrieved: how many columns the retrieval top-K takes.
    """

    query: dict[str, np.ndarray]
    embeddings: np.ndarray
    candidates: np.ndarray
    retrieval_scores: np.ndarray
    ranking_scores: np.ndarray
    servable: np.ndarray
    recall_counts: tuple[int, int]
    retrieved: int

    def features(self, index: ItemIndex, block: UserBlock, rows: np.ndarray) -> np.ndarray:
        """`[len(rows), width, features]` the list ranker's inputs (`list_features`) for block rows `rows`."""
        return candidate_features(
            self.candidates[rows],
            self.retrieval_scores[rows],
            self.ranking_scores[rows],
            index.activity,
            index.unit_embeddings,
            [block.seen[row] for row in rows],
            block.last_seen[rows],
            index.factors,
            self.retrieved,
        )


def candidate_lists(
    scorer: BundleScorer,
    block: UserBlock,
    index: ItemIndex,
    settings: RecommendSettings,
    clock: _StageClock | None = None,
) -> CandidateLists:
    """Top-K unseen items per user by the two towers (or the popularity fallback), rated by the re-ranker's
    rating model (for the list ranker: the one it reads)."""
    clock = clock or _StageClock(None)
    query = query_inputs(block, index, scorer.schema, settings.timestamp, scorer.history_length)
    queries = scorer.embed_users(query)
    clock.lap("query_tower")
    retrieval_scores, candidates, recall_counts = _retrieve(index, queries, block.seen, settings)
    user_ids = block.users[USER_ID].combine_chunks()
    servable = scorer.known_users(user_ids) & np.array([len(s) > 0 for s in block.seen], dtype=bool)
    fallback = ~servable
    if fallback.any():
        seen = [s for s, unserved in zip(block.seen, fallback, strict=True) if unserved]
        retrieval_scores[fallback], candidates[fallback] = top_k_popular_unseen(index.popularity, seen, settings.top_k)
    retrieved = candidates.shape[1]
    extra = scorer.list_inputs.extra_candidates
    if settings.reranker == LIST_RANKER and extra and servable.any():
        candidates, retrieval_scores = _other_sources(
            index, queries, block.seen, servable, candidates, retrieval_scores, extra
        )
    clock.lap("top_k")
    ranking_scores = np.full(candidates.shape, np.nan, np.float32)
    rating_model = _rating_model(scorer, settings)
    if rating_model is not None:
        users = np.flatnonzero(servable)
        ranking_scores[users] = scorer.rate_candidates(rating_model, query, users, candidates[users], index)
    clock.lap("rerank")
    return CandidateLists(
        query, queries, candidates, retrieval_scores, ranking_scores, servable, recall_counts, retrieved
    )


def _rating_model(scorer: BundleScorer, settings: RecommendSettings) -> str | None:
    """The rating signature that rates the candidates: the re-ranker, or the one the list ranker reads; None."""
    name = scorer.list_inputs.rating_model if settings.reranker == LIST_RANKER else settings.reranker
    return None if name in (None, NO_RERANKER) else name


def _other_sources(
    index: ItemIndex,
    queries: np.ndarray,
    seen: list[np.ndarray],
    servable: np.ndarray,
    top: np.ndarray,
    top_scores: np.ndarray,
    extra: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The retrieval top-K `[users, k]` (scores `top_scores`) of the `servable` users merged with the `extra` most
    popular unseen items in the window and the `extra` unseen items of highest affinity (`ItemFactors`), with the
    two towers' score of each: `[users, k + sources * extra]` each (other rows keep theirs, then -1 / -inf)."""
    rows = np.flatnonzero(servable)
    mine = [seen[row] for row in rows]
    sources = [top_k_popular_unseen(index.popularity, mine, extra)[1]]
    if index.factors is not None:
        affinity = index.cached("affinity", lambda: ExactIndex(index.factors.targets))
        sources.append(affinity.top_k(index.factors.user_vectors(mine), mine, extra)[1])
    width = top.shape[1] + extra * len(sources)
    candidates = np.full((len(top), width), -1, np.int64)
    scores = np.full((len(top), width), NEG_INF, np.float32)
    candidates[:, : top.shape[1]], scores[:, : top.shape[1]] = top, top_scores
    merged = merge_candidates(top[rows], *sources)
    towers = np.einsum("ud,ukd->uk", queries[rows], index.embeddings[np.maximum(merged, 0)])
    candidates[rows], scores[rows] = merged, np.where(merged >= 0, towers, NEG_INF)
    return candidates, scores


def recommend_block(
    scorer: BundleScorer,
    block: UserBlock,
    index: ItemIndex,
    settings: RecommendSettings,
    seconds: dict[str, float] | None = None,
) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    """Top-K unseen items per user by the two towers, re-ranked, cut to `final_k`.

    Users the model cannot serve (an id unknown to the bundle, or no history)
    get the most popular unseen items, labelled `popularity_fallback`. The
    re-ranker is a rating model blended with the retrieval score and the
    popularity prior (`scoring.blend`), or the bundle's list ranker (`LIST_RANKER`).

    Args:
        seconds: if given, each stage's time is added to it: `query_tower`, `top_k`
            (fallbacks and the recall sample included), `rerank` (the rating model and
            the list ranker) and `rows` (blend, order, output tables).

    Returns:
        recommendations (`outputs.RECOMMENDATIONS_SCHEMA`), user embeddings
        (`outputs.USER_EMBEDDINGS_SCHEMA`), and counts for Beam counters.
    """
    clock = _StageClock(seconds)
    user_ids = block.users[USER_ID].combine_chunks()
    lists = candidate_lists(scorer, block, index, settings, clock)
    candidates, retrieval_scores, ranking_scores = lists.candidates, lists.retrieval_scores, lists.ranking_scores
    fallback = ~lists.servable
    scores, list_scores = _final_scores(scorer, lists, block, index, settings, clock)
    order = rerank(candidates, scores, retrieval_scores, settings.final_k)
    chosen = np.take_along_axis(candidates, order, axis=1)
    rows, ranks = np.nonzero(chosen >= 0)
    item_rows = chosen[rows, ranks]
    final_scores = np.take_along_axis(scores, order, axis=1)[rows, ranks]
    recommendations = outputs.recommendations_table(
        user_ids=user_ids.take(pa.array(rows)),
        ranks=ranks + 1,
        item_ids=index.items[ITEM_ID].take(pa.array(item_rows)),
        retrieval_scores=np.take_along_axis(retrieval_scores, order, axis=1)[rows, ranks],
        ranking_scores=np.take_along_axis(ranking_scores, order, axis=1)[rows, ranks],
        scores=final_scores,
        sources=_SOURCES.take(pa.array(fallback[rows].astype(np.int8))),
        model_version=scorer.version,
        run_id=settings.run_id,
    )
    embeddings = outputs.embeddings_table(outputs.USER_EMBEDDINGS_SCHEMA, user_ids, lists.embeddings, scorer.version)
    counts = {
        "users_scored": int(lists.servable.sum()),
        "fallback_users": int(fallback.sum()),
        "items_excluded": int(sum(len(s) for s in block.seen)),
        "users_short_of_final_k": int((np.bincount(rows, minlength=len(user_ids)) < settings.final_k).sum()),
        "nan_scores": int(np.isnan(final_scores).sum()),
        **_non_finite(lists, list_scores, settings, scorer),
        "recall_hits": lists.recall_counts[0],
        "recall_relevant": lists.recall_counts[1],
    }
    clock.lap("rows")
    return recommendations, embeddings, counts


def _final_scores(
    scorer: BundleScorer,
    lists: CandidateLists,
    block: UserBlock,
    index: ItemIndex,
    settings: RecommendSettings,
    clock: _StageClock,
) -> tuple[np.ndarray, np.ndarray]:
    """`[users, k]` the scores that order each user's candidates: the blend of predicted rating, retrieval score
    and popularity prior (`scoring.blend`), or for the users it serves the list ranker's; and `[served, k]` the
    list ranker's scores (none without it)."""
    valid = lists.candidates >= 0
    popularity = np.where(valid, index.popularity[lists.candidates], 0.0)
    scores = blend(
        lists.ranking_scores,
        lists.retrieval_scores,
        valid,
        settings.blend_weight,
        popularity,
        settings.popularity_weight,
    )
    list_scores = np.zeros((0, lists.candidates.shape[1]), np.float32)
    if settings.reranker == LIST_RANKER and lists.servable.any():
        rows = np.flatnonzero(lists.servable)
        list_scores = scorer.rank_lists(lists.features(index, block, rows))
        scores[rows] = np.where(valid[rows], list_scores, NEG_INF)
        clock.lap("rerank")
    return scores, list_scores


def _non_finite(
    lists: CandidateLists, list_scores: np.ndarray, settings: RecommendSettings, scorer: BundleScorer
) -> dict[str, int]:
    """Counts of values a broken model makes NaN or infinite, for the publish gate (`jobs.gate.NON_FINITE`):
    scores of candidates (a rating model rates every candidate of a user it serves), list-ranker scores of
    the users it orders, user embeddings with any such component."""
    valid = lists.candidates >= 0
    served = valid & lists.servable[:, None]
    rated = served if _rating_model(scorer, settings) is not None else np.zeros_like(served)
    listed = valid[lists.servable] if len(list_scores) else np.zeros(list_scores.shape, bool)
    return {
        "non_finite_retrieval_scores": int((valid & ~np.isfinite(lists.retrieval_scores)).sum()),
        "non_finite_ranking_scores": int((rated & ~np.isfinite(lists.ranking_scores)).sum()),
        "non_finite_list_scores": int((listed & ~np.isfinite(list_scores)).sum()),
        "non_finite_user_embeddings": int((~np.isfinite(lists.embeddings)).any(axis=1).sum()),
    }


def _retrieve(
    index: ItemIndex, queries: np.ndarray, seen: list[np.ndarray], settings: RecommendSettings
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Top-K unseen items `[users, top_k]` (scores, indices) by the chosen index, and its measured recall.

    With ScaNN, a sample of the users (every `recall_sample_every`-th, from the first)
    is also retrieved exactly: `(hits, relevant)` counts how many of their exact
    top-K items the approximate lists hold. The exact index gives `(0, 0)`.
    """
    shards = settings.item_shard_size
    exact = index.cached(("exact", shards), lambda: ExactIndex(index.embeddings, shards))
    if settings.index == "exact":
        return *exact.top_k(queries, seen, settings.top_k), (0, 0)
    approximate = index.cached(("scann", settings.scann), lambda: ScannIndex(index.embeddings, settings.scann))
    scores, candidates = approximate.top_k(queries, seen, settings.top_k)
    sample = np.arange(0, len(queries), settings.recall_sample_every)
    _, truth = exact.top_k(queries[sample], [seen[i] for i in sample], settings.top_k)
    return scores, candidates, recall(candidates[sample], truth)


def recommend_blocks(
    scorer: BundleScorer,
    blocks: Iterable[UserBlock],
    index: ItemIndex,
    settings: RecommendSettings,
    threads: int | None = None,
) -> Iterator[tuple[pa.Table, pa.Table, dict[str, int]]]:
    """`recommend_block` of every block, in order, `threads` blocks at a time (`BlocksInFlight`)."""
    flight = BlocksInFlight(lambda block: recommend_block(scorer, block, index, settings), threads)
    try:
        for block in blocks:
            yield from (result for _, result in flight.submit(None, block))
        yield from (result for _, result in flight.drain())
    finally:
        flight.close()


class _StageClock:
    """Adds the time since the previous lap to `seconds[stage]` (nothing without `seconds`)."""

    def __init__(self, seconds: dict[str, float] | None) -> None:
        self._seconds, self._last = seconds, time.perf_counter()

    def lap(self, stage: str) -> None:
        if self._seconds is not None:
            now = time.perf_counter()
            self._seconds[stage] = self._seconds.get(stage, 0.0) + now - self._last
            self._last = now


def similar_items(
    index: ItemIndex, k: int, model_version: str, items: range | None = None, shard_size: int | None = None
) -> pa.Table:
    """The `k` nearest items of each item in `items` (default all) by cosine of candidate-tower embeddings.

    An item is never its own neighbour; `shard_size` bounds the score matrix as in `top_k_unseen`.
    """
    items = items if items is not None else range(len(index.embeddings))
    unit = index.unit_embeddings
    queries = unit[items.start : items.stop]
    scores, neighbours = top_k_unseen(queries, unit, [np.array([i]) for i in items], k, shard_size=shard_size)
    rows, ranks = np.nonzero(neighbours >= 0)
    ids = index.items[ITEM_ID].combine_chunks()
    return outputs.similar_items_table(
        ids.take(pa.array(rows + items.start)),
        ranks + 1,
        ids.take(pa.array(neighbours[rows, ranks])),
        scores[rows, ranks],
        model_version,
    )
