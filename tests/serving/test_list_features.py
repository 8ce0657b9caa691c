"""The list ranker's inputs, derived by hand."""

import numpy as np
import pyarrow as pa
import pytest

from recsys_core.data.activity import DAY_SECONDS, NEVER, ItemActivity
from recsys_core.serving.list_features import (
    HISTORY_ITEMS,
    LIST_FEATURES,
    ItemFactors,
    candidate_features,
    merge_candidates,
    unit_rows,
)


def _column(features, name):
    return features[..., LIST_FEATURES.index(name)]


def test_candidate_features_by_hand():
    embeddings = np.array([[1, 0], [0, 1], [1, 1], [3, 0]], np.float32)  # item 3 points as item 0
    factors = ItemFactors(
        np.array(["a", "b", "c", "d"], dtype=object),
        sources=np.array([[1, 0], [0, 2], [0, 0], [1, 1]], np.float32),
        targets=np.array([[1, 1], [2, 0], [0, 3], [1, 0]], np.float32),
    )
    candidates = np.array([[2, 3, -1], [0, 1, 2]])
    retrieval = np.array([[2.0, 1.0, -np.inf], [3.0, 2.0, 1.0]], np.float32)
    ratings = np.array([[4.0, 2.0, np.nan], [np.nan, np.nan, np.nan]], np.float32)
    newest = 100 * DAY_SECONDS
    activity = ItemActivity(
        popularity=np.array([0.0, 1.0, 3.0, 7.0], np.float32),
        recent=np.array([[0, 0, 2], [1, 1, 1], [0, 3, 3], [2, 5, 9]], np.float32),  # 7 days, 30 days, all time
        first_seen=np.array([newest - 50 * DAY_SECONDS, newest, newest - 9 * DAY_SECONDS, NEVER]),
        newest=newest,
    )
    seen = [np.array([0, 1]), np.array([3])]
    last_seen = np.array([newest - 2 * DAY_SECONDS, newest])
    unit = unit_rows(embeddings)
    features = candidate_features(candidates, retrieval, ratings, activity, unit, seen, last_seen, factors, retrieved=2)
    assert features.shape == (2, 3, len(LIST_FEATURES))
    assert (features[0, 2] == 0).all()  # the empty slot
    np.testing.assert_allclose(_column(features, "retrieval_z")[0, :2], [1, -1])
    # The third column came from another source: ranked as "beyond the top-K", and flagged.
    np.testing.assert_allclose(_column(features, "retrieval_rank")[1], np.log1p([0, 1, 2]))
    np.testing.assert_allclose(_column(features, "retrieved")[1], [1, 1, 0])
    np.testing.assert_allclose(_column(features, "rating")[0, :2], [4, 2])
    np.testing.assert_allclose(_column(features, "rating_z")[1], 0)  # no predictions for user 1
    np.testing.assert_allclose(_column(features, "popularity")[0, :2], np.log1p([3, 7]), rtol=1e-6)
    # User 0 saw items 0 ([1, 0]) and 1 ([0, 1]); candidate 2 is [1, 1]/sqrt 2, candidate 3 is [1, 0].
    np.testing.assert_allclose(_column(features, "history_cosine_mean")[0, :2], [2**-0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(_column(features, "history_cosine_max")[0, :2], [2**-0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(_column(features, "user_activity")[:, 0], np.log1p([2, 1]), rtol=1e-6)
    # Affinity: (sum of the sources of the seen items) . target of the candidate.
    # User 0: [1, 0] + [0, 2] = [1, 2]; candidate 2: [0, 3] -> 6; candidate 3: [1, 0] -> 1.
    # User 1: [1, 1]; candidates 0, 1, 2: [1, 1] -> 2, [2, 0] -> 2, [0, 3] -> 3.
    np.testing.assert_allclose(_column(features, "item_affinity"), [[6, 1, 0], [2, 2, 3]])
    np.testing.assert_allclose(_column(features, "item_affinity_z")[0, :2], [1, -1])
    # Time: candidates 2 and 3 of user 0, then 0, 1, 2 of user 1.
    np.testing.assert_allclose(_column(features, "popularity_7_days")[0, :2], np.log1p([0, 2]), rtol=1e-6)
    np.testing.assert_allclose(_column(features, "popularity_30_days")[1], np.log1p([0, 1, 3]), rtol=1e-6)
    np.testing.assert_allclose(_column(features, "popularity_all_time")[0, :2], np.log1p([3, 9]), rtol=1e-6)
    np.testing.assert_allclose(_column(features, "trend")[0, :2], [-np.log1p(3), np.log1p(2) - np.log1p(5)], rtol=1e-6)
    np.testing.assert_allclose(_column(features, "item_age")[1], np.log1p([50, 0, 9]), rtol=1e-6)
    np.testing.assert_allclose(_column(features, "item_age")[0, 1], 0)  # never seen: no age
    np.testing.assert_allclose(_column(features, "user_recency")[:, 0], np.log1p([2, 0]), rtol=1e-6)


def test_history_cosines_read_only_the_last_items():
    embeddings = unit_rows(np.eye(HISTORY_ITEMS + 2, dtype=np.float32))
    seen = [np.arange(HISTORY_ITEMS + 1)]  # item 0 is the oldest: one too many to be read
    candidates = np.array([[0, HISTORY_ITEMS]])
    zeros = np.zeros(candidates.shape, np.float32)
    activity = ItemActivity.none(HISTORY_ITEMS + 2)
    features = candidate_features(candidates, zeros, zeros * np.nan, activity, embeddings, seen, np.array([-1]))
    np.testing.assert_allclose(_column(features, "history_cosine_max")[0], [0, 1])
    np.testing.assert_allclose(_column(features, "item_affinity")[0], 0)  # no factors: no affinity


def test_item_factors_follow_ids_and_round_trip():
    factors = ItemFactors(
        np.array(["a", "b"], dtype=object), np.eye(2, dtype=np.float32), 2 * np.eye(2, dtype=np.float32)
    )
    aligned = ItemFactors.from_bytes(factors.to_bytes()).aligned(pa.array(["b", "z", "a"]))
    np.testing.assert_array_equal(aligned.sources, [[0, 1], [0, 0], [1, 0]])
    np.testing.assert_array_equal(aligned.targets, [[0, 2], [0, 0], [2, 0]])
    np.testing.assert_array_equal(aligned.user_vectors([np.array([0, 2, 2]), np.array([], np.int64)]), [[1, 1], [0, 0]])


@pytest.mark.parametrize("rank", [2, 40])
def test_low_rank_is_the_best_approximation_of_that_rank(rank):
    from recsys_core.evaluation.baselines import low_rank

    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((120, 8)) @ rng.standard_normal((8, 100)) + 0.01 * rng.standard_normal((120, 100))
    left, right = low_rank(matrix, rank)
    singular = np.linalg.svd(matrix, compute_uv=False)
    # Eckart-Young: the error of the best rank-r approximation is the norm of the remaining singular values.
    best = np.sqrt((singular[rank:] ** 2).sum())
    assert np.linalg.norm(matrix - left @ right.T) == pytest.approx(best, rel=1e-3)


def test_other_sources_join_after_the_retrieved_candidates_without_repeats():
    retrieved = np.array([[5, 3, -1], [1, 2, 4]])
    popular = np.array([[3, 7], [4, 1]])
    affine = np.array([[7, 9], [8, -1]])
    merged = merge_candidates(retrieved, popular, affine)
    np.testing.assert_array_equal(merged, [[5, 3, 7, 9, -1, -1, -1], [1, 2, 4, 8, -1, -1, -1]])
