"""Beam-free block scoring with a real bundle: fallbacks, exclusions, neighbours."""

import numpy as np
import pyarrow as pa
import pytest

from recsys_core.data.activity import item_activity
from recsys_core.serving.recommend import (
    FALLBACK_SOURCE,
    MODEL_SOURCE,
    BundleScorer,
    RecommendSettings,
    UserBlock,
    build_item_index,
    recommend_block,
    recommend_blocks,
    similar_items,
    user_blocks,
)


@pytest.fixture(scope="module")
def scorer(ml100k_bundle):
    return BundleScorer(ml100k_bundle)


@pytest.fixture(scope="module")
def index(scorer, ml100k):
    return build_item_index(scorer, ml100k.items, item_activity(ml100k.ratings, ml100k.items["item_id"]))


def _settings(reranker="ranking"):
    return RecommendSettings(top_k=50, final_k=10, reranker=reranker, timestamp=893_000_000, run_id="test")


def test_users_the_model_cannot_serve_get_a_labelled_popularity_fallback(scorer, index, ml100k):
    users = ml100k.users.slice(0, 3)
    newcomer = users.slice(2, 1).set_column(0, "user_id", pa.array(["someone-new"]))
    block = UserBlock(
        users=pa.concat_tables([users.slice(0, 2), newcomer]),
        # user 1 with history; user 2 known to the model but no history today; a new id with history
        seen=[np.array([0, 1, 2]), np.array([], np.int64), np.array([49])],
        last_seen=np.array([880_000_000, -1, 880_000_000]),
    )
    recs, embeddings, counts = recommend_block(scorer, block, index, _settings())
    assert counts == {
        "users_scored": 1,
        "fallback_users": 2,
        "items_excluded": 4,
        "users_short_of_final_k": 0,
        "nan_scores": 0,
        "recall_hits": 0,  # the exact index measures no recall
        "recall_relevant": 0,
        "non_finite_retrieval_scores": 0,
        "non_finite_ranking_scores": 0,
        "non_finite_list_scores": 0,
        "non_finite_user_embeddings": 0,
    }
    by_user = {u: recs.filter(pa.compute.equal(recs["user_id"], u)).to_pydict() for u in ("1", "2", "someone-new")}
    assert set(by_user["1"]["source"]) == {MODEL_SOURCE}
    popular = np.argsort(-index.popularity, kind="stable")
    for user, seen in (("2", []), ("someone-new", [49])):
        assert set(by_user[user]["source"]) == {FALLBACK_SOURCE}
        expected = [index.items["item_id"][int(i)].as_py() for i in popular if i not in seen][:10]
        assert by_user[user]["item_id"] == expected
        assert all(score is None for score in by_user[user]["ranking_score"])
        assert by_user[user]["rank"] == list(range(1, 11))
    assert embeddings.num_rows == 3
    # Timing the stages changes nothing, and accounts for every stage.
    seconds = {}
    timed, _, timed_counts = recommend_block(scorer, block, index, _settings(), seconds=seconds)
    assert timed.equals(recs) and timed_counts == counts
    assert set(seconds) == {"query_tower", "top_k", "rerank", "rows"} and min(seconds.values()) > 0


def test_blocks_carry_every_rated_item_once_and_heavy_users_make_smaller_blocks(ml100k):
    blocks = user_blocks(ml100k.users, ml100k.ratings, ml100k.items, block_size=400)
    assert [b.users.num_rows for b in blocks] == [400, 400, 143]
    assert sum(len(s) for b in blocks for s in b.seen) == 100_000
    capped = user_blocks(ml100k.users, ml100k.ratings, ml100k.items, block_size=400, max_seen=5_000)
    sizes = [sum(len(s) for s in b.seen) for b in capped]
    assert sum(sizes) == 100_000 and sum(b.users.num_rows for b in capped) == 943
    # Every block stays under the cap, unless one user alone exceeds it.
    assert all(size <= 5_000 or b.users.num_rows == 1 for size, b in zip(sizes, capped, strict=True))
    assert all(b.users.num_rows <= 400 for b in capped) and len(capped) >= 20
    # Seen items run oldest first, and the last one was rated at `last_seen`: user "1" by hand from u.data.
    ratings = ml100k.ratings.filter(pa.compute.equal(ml100k.ratings["user_id"], "1")).to_pandas()
    ratings = ratings.sort_values(["timestamp", "item_id"], kind="stable")
    items = ml100k.items["item_id"].to_pylist()
    assert [items[i] for i in blocks[0].seen[0]] == ratings["item_id"].tolist()
    assert blocks[0].last_seen[0] == ratings["timestamp"].max()


def test_similar_items_are_nearest_by_cosine_and_never_the_item(index):
    table = similar_items(index, k=5, model_version="v")
    assert table.num_rows == 1682 * 5
    unit = index.embeddings / np.linalg.norm(index.embeddings, axis=1, keepdims=True)
    first = table.slice(0, 5).to_pydict()
    cosine = unit[0] @ unit.T
    cosine[0] = -np.inf
    expected = [index.items["item_id"][int(i)].as_py() for i in np.argsort(-cosine)[:5]]
    assert first["item_id"] == ["1"] * 5 and first["similar_item_id"] == expected
    np.testing.assert_allclose(first["score"], np.sort(cosine)[::-1][:5], rtol=1e-5)


def test_a_block_of_only_new_users_is_all_fallback(scorer, index, ml100k):
    newcomers = ml100k.users.slice(0, 2).set_column(0, "user_id", pa.array(["new-a", "new-b"]))
    block = UserBlock(newcomers, seen=[np.array([], np.int64), np.array([], np.int64)], last_seen=np.array([-1, -1]))
    recs, _, counts = recommend_block(scorer, block, index, _settings())
    assert counts["fallback_users"] == 2 and recs.num_rows == 20
    assert set(recs["source"].to_pylist()) == {FALLBACK_SOURCE}


def test_a_list_ranker_that_returns_nan_is_counted_for_the_gate(scorer, index, ml100k):
    """A broken list ranker (NaN for every candidate) must not ship its lists silently in another order."""
    from recsys_core.serving.list_features import LIST_RANKER, ListRankerInputs

    broken = scorer.with_list_ranker(ListRankerInputs("ranking"), lambda f: np.full(f.shape[:2], np.nan, np.float32))
    [block] = user_blocks(ml100k.users.slice(0, 20), ml100k.ratings, ml100k.items, block_size=20)
    settings = RecommendSettings(top_k=30, final_k=10, reranker=LIST_RANKER, timestamp=893_000_000, run_id="t")
    _, _, counts = recommend_block(broken, block, index, settings)
    assert counts["users_scored"] == 20
    assert counts["non_finite_list_scores"] == 20 * 30  # every candidate of every user it orders
    assert counts["non_finite_ranking_scores"] == 0 and counts["non_finite_user_embeddings"] == 0
    from jobs.gate import Gate, failures

    healthy = {"distinct_items_recommended": 100, "users_short_of_final_k": 0}
    assert "600 list-ranker scores are NaN or infinite" in failures(Gate(), {**healthy, **counts}, {})[0]


def test_rating_from_states_gives_the_lists_of_rating_every_pair(ml100k_bundle, index, ml100k):
    """The fast re-rank (a state per user and per item) ships the same lists as rating every pair's raw
    features (the previous kernel, still used for bundles without state signatures)."""
    fast, pairwise = BundleScorer(ml100k_bundle), BundleScorer(ml100k_bundle)
    assert "ranking_candidates" in fast.pair_states and "dlrm_candidates" not in fast.pair_states
    pairwise.pair_states = set()
    settings = RecommendSettings(top_k=100, final_k=20, reranker="ranking", timestamp=893_000_000, run_id="test")
    for block in user_blocks(ml100k.users, ml100k.ratings, ml100k.items, block_size=400):
        expected, _, _ = recommend_block(pairwise, block, index, settings)
        rows, _, _ = recommend_block(fast, block, index, settings)
        assert rows.select(["user_id", "rank", "source"]).equals(expected.select(["user_id", "rank", "source"]))
        # The same items in the same places, except where two items' final scores tie to float precision
        # (the two paths round differently): those may trade places, and only those.
        moved = np.asarray(rows["item_id"]) != np.asarray(expected["item_id"])
        assert moved.mean() < 0.001
        np.testing.assert_allclose(np.asarray(rows["score"])[moved], np.asarray(expected["score"])[moved], atol=1e-5)
        kept = ~moved
        np.testing.assert_allclose(
            np.asarray(rows["ranking_score"])[kept], np.asarray(expected["ranking_score"])[kept], rtol=1e-5, atol=1e-5
        )


def test_blocks_scored_side_by_side_give_each_blocks_own_result_in_order(scorer, index, ml100k):
    blocks = user_blocks(ml100k.users, ml100k.ratings, ml100k.items, block_size=150)
    one_by_one = [recommend_block(scorer, block, index, _settings()) for block in blocks]
    side_by_side = list(recommend_blocks(scorer, blocks, index, _settings(), threads=3))
    assert len(side_by_side) == len(one_by_one) == 7
    for (rows, embeddings, counts), (expected_rows, expected_embeddings, expected_counts) in zip(
        side_by_side, one_by_one, strict=True
    ):
        assert rows.equals(expected_rows) and embeddings.equals(expected_embeddings) and counts == expected_counts
