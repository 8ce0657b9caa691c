import numpy as np

from recsys_core.scoring import rerank, top_k_unseen


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
