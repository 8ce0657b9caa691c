import numpy as np

from recsys_core.serving.scoring import ExactIndex, blend, rerank, top_k_unseen


def test_top_k_unseen_matches_brute_force_and_refills():
    rng = np.random.default_rng(0)
    queries, items = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(30, 4)).astype(np.float32)
    seen = [np.array([], np.int64), np.array([3, 7]), np.arange(10), np.array([29]), np.arange(0, 30, 2)]
    scores, indices = top_k_unseen(queries, items, seen, k=6, block_size=2)
    full = queries @ items.T
    for row, excluded in enumerate(seen):
        allowed = np.setdiff1d(np.arange(30), excluded)
        expected = allowed[np.argsort(-full[row, allowed], kind="stable")][:6]
        np.testing.assert_array_equal(indices[row], expected)
        np.testing.assert_allclose(scores[row], full[row, expected], rtol=1e-5)
        assert len(set(indices[row]) & set(excluded.tolist())) == 0


def test_top_k_unseen_marks_missing_slots_when_too_few_items_are_unseen():
    items = np.eye(4, dtype=np.float32)
    scores, indices = top_k_unseen(np.ones((1, 4), np.float32), items, [np.array([0, 1, 2])], k=3)
    assert indices.tolist() == [[3, -1, -1]]
    assert np.isneginf(scores[0, 1:]).all()


def test_rerank_orders_by_ranking_then_retrieval_then_item():
    candidates = np.array([[5, 9, 2, 7, -1]])
    ranking = np.array([[4.0, 4.5, 4.0, 4.0, -np.inf]])
    retrieval = np.array([[0.3, 0.1, 0.3, 0.9, -np.inf]])
    order = rerank(candidates, ranking, retrieval, final_k=5)
    assert candidates[0, order[0]].tolist() == [9, 7, 2, 5, -1]


def test_blend_mixes_per_row_z_scores_and_keeps_retrieval_order_for_unrated_rows():
    # Row 0: ranking [3, 5, 4] has z = [-1.2247, 1.2247, 0]; retrieval [2, 0, 1] has z = [1.2247, -1.2247, 0].
    ranking = np.array([[3.0, 5.0, 4.0], [np.nan, np.nan, np.nan]])
    retrieval = np.array([[2.0, 0.0, 1.0], [0.5, 0.7, 0.1]])
    valid = np.array([[True, True, True], [True, True, False]])
    z = np.sqrt(1.5)
    np.testing.assert_allclose(blend(ranking, retrieval, valid, 1.0)[0], [-z, z, 0.0])
    np.testing.assert_allclose(blend(ranking, retrieval, valid, 0.0)[0], [z, -z, 0.0])
    np.testing.assert_allclose(blend(ranking, retrieval, valid, 0.25)[0], [0.5 * z, -0.5 * z, 0.0])
    # Row 1 (a fallback): no ranking scores, retrieval z over the two valid slots, -inf at the empty one.
    np.testing.assert_allclose(blend(ranking, retrieval, valid, 0.8)[1], [-1.0, 1.0, -np.inf])
    order = rerank(np.array([[4, 8, 6]]), blend(ranking, retrieval, valid, 0.75)[:1], retrieval[:1], final_k=3)
    assert order.tolist() == [[1, 2, 0]]  # 0.75 * z(ranking) wins over 0.25 * z(retrieval)


def test_popularity_prior_adds_its_own_z_score():
    # log1p([0, e - 1, e^2 - 1]) = [0, 1, 2]: z = [-1.2247, 0, 1.2247]; retrieval [2, 1, 0]: z = [1.2247, 0, -1.2247].
    popularity = np.array([[0.0, np.e - 1, np.e**2 - 1]])
    retrieval = np.array([[2.0, 1.0, 0.0]])
    nothing = np.full((1, 3), np.nan)
    valid = np.ones((1, 3), bool)
    z = np.sqrt(1.5)
    np.testing.assert_allclose(blend(nothing, retrieval, valid, 0.0, popularity, 0.5)[0], [0.5 * z, 0.0, -0.5 * z])
    np.testing.assert_allclose(blend(nothing, retrieval, valid, 0.0, popularity, 2.0)[0], [-z, 0.0, z])


def test_sharded_top_k_equals_unsharded_even_with_ties():
    rng = np.random.default_rng(5)
    queries = rng.normal(size=(37, 8)).astype(np.float32)
    items = np.round(rng.normal(size=(701, 8)), 1).astype(np.float32)
    items[350:360] = items[3]  # identical items: equal scores, across shards
    seen = [rng.choice(701, rng.integers(0, 695), replace=False) for _ in range(37)]
    expected = top_k_unseen(queries, items, seen, k=20, block_size=16)
    for shard_size, shards in ((1, 10), (70, 10), (100, 8), (233, 4), (500, 2), (5000, 1)):
        index = ExactIndex(items, shard_size)
        assert len(index._bounds) == shards  # shards of at least 64 items
        scores, indices = index.top_k(queries, seen, k=20, block_size=16)
        np.testing.assert_array_equal(indices, expected[1])
        np.testing.assert_array_equal(scores, expected[0])  # the same bits in any shard
    # Ties go to the lower item index, and seen items never appear.
    for row in range(37):
        valid = expected[1][row][expected[1][row] >= 0]
        assert not set(valid) & set(seen[row].tolist())
