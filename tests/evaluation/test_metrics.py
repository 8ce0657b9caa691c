"""Hand-computed toy cases for recsys_core.evaluation.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys_core.evaluation.metrics import beyond_accuracy, gini, list_metrics, per_user_scores, rating_metrics

# User 0: relevant {1, 7, 9} (7 given twice, counts once), hits at slots 1 and 3 -> [0, 1, 0, 1].
# User 1: relevant {2, 4}, an empty slot at 1, hits at slots 0 and 2 -> [1, 0, 1, 0]. Its -1 must not match
#   item 9 of user 0 (a naive (user, item) key user * 10 + item would collide there).
# User 2: no relevant item: skipped, although its list holds items relevant to others.
TOP = np.array([[3, 1, 0, 7], [4, -1, 2, 5], [9, 1, 2, 3]])
RELEVANT = [np.array([1, 7, 7, 9]), np.array([2, 4]), np.array([], dtype=np.int64)]
D1, D2, D3 = 1.0, 1 / math.log2(3), 1 / math.log2(4)  # discounts of slots 0, 1, 2
D4 = 1 / math.log2(5)  # discount of slot 3

# Per user and k (k = 6 exceeds the 4 slots: slots 4, 5 are empty), as (recall, precision, ndcg, map, hit_rate):
# user 0, k=1: no hit                          -> 0, 0, 0, 0, 0
# user 0, k=3: 1 hit; dcg D2, ideal of 3 hits D1+D2+D3; map = (1/2) / 3
# user 0, k=6: 2 hits; dcg D2+D4, ideal D1+D2+D3; map = (1/2 + 2/4) / 3 = 1/3
# user 1, k=1: 1 hit of 2 -> recall 1/2, precision 1, ndcg 1, map 1/min(1, 2) = 1, hit 1
# user 1, k=3: 2 hits; dcg D1+D3, ideal of 2 hits D1+D2; map = (1/1 + 2/3) / 2 = 5/6
# user 1, k=6: same hits, precision 2/6
USER0 = {
    1: (0, 0, 0, 0, 0),
    3: (1 / 3, 1 / 3, D2 / (D1 + D2 + D3), 1 / 6, 1),
    6: (2 / 3, 2 / 6, (D2 + D4) / (D1 + D2 + D3), 1 / 3, 1),
}
USER1 = {
    1: (1 / 2, 1, 1, 1, 1),
    3: (1, 2 / 3, (D1 + D3) / (D1 + D2), 5 / 6, 1),
    6: (1, 2 / 6, (D1 + D3) / (D1 + D2), 5 / 6, 1),
}
NAMES = ("recall", "precision", "ndcg", "map", "hit_rate")


def test_list_metrics_means_over_users_with_relevant_items():
    metrics = list_metrics(TOP, RELEVANT, ks=(1, 3, 6), prefix="val_")
    expected = {
        f"val_{name}_at_{k}": (USER0[k][i] + USER1[k][i]) / 2 for k in (1, 3, 6) for i, name in enumerate(NAMES)
    }
    assert metrics == pytest.approx(expected)
    # Spot checks of the table above, written out.
    assert metrics["val_recall_at_3"] == pytest.approx((1 / 3 + 1) / 2)
    assert metrics["val_map_at_6"] == pytest.approx((1 / 3 + 5 / 6) / 2)
    assert metrics["val_ndcg_at_1"] == pytest.approx(0.5)


def test_per_user_scores_marks_users_without_relevant_items_nan():
    scores = per_user_scores(TOP, RELEVANT, k=3)
    for i, name in enumerate(NAMES):
        assert scores[name].shape == (3,) and scores[name].dtype == np.float64
        assert scores[name][:2] == pytest.approx([USER0[3][i], USER1[3][i]])
        assert np.isnan(scores[name][2])


def test_list_metrics_nan_when_no_user_has_relevant_items():
    metrics = list_metrics(TOP[:1], [np.array([], dtype=np.int64)], ks=(2,))
    assert set(metrics) == {f"{name}_at_2" for name in NAMES}
    assert all(np.isnan(value) for value in metrics.values())


def test_gini():
    assert gini(np.array([3, 3, 3])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)  # (2*4 - 4 - 1) * 4 / (4 * 4)
    assert gini(np.array([4, 0, 0, 0])) == pytest.approx(0.75)  # sorted first
    assert np.isnan(gini(np.zeros(3)))


# Items 0..4. Item 1 is orthogonal to 0 (and not unit length), item 2 points like item 0, item 3 is zero, item 4 at 45°.
VECTORS = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
POPULARITY = np.array([4, 2, 0, 1, 1])  # sum 8: p = 1/2, 1/4, 1/8 (unseen, as if seen once), 1/8, 1/8


def test_beyond_accuracy_at_2():
    # k = 2 keeps [0, 1], [0, 2] and [4] (slot 3 of row 1 is cut, -1 slots ignored).
    top = np.array([[0, 1, -1], [0, 2, 3], [4, -1, -1]])
    metrics = beyond_accuracy(top, 5, POPULARITY, VECTORS, k=2, prefix="t_")
    # Exposure [2, 1, 1, 0, 1] -> coverage 4/5; sorted [0, 1, 1, 1, 2], weights 2i-6 = -4, -2, 0, 2, 4:
    # (0 - 2 + 0 + 2 + 8) / (5 * 5) = 0.32.
    # Novelty over slots 0, 1, 0, 2, 4: -log2 p = 1, 2, 1, 3, 3 -> 10 / 5 = 2.
    # Diversity: row 0 orthogonal -> 1, row 1 same direction -> 0, row 2 has one item (skipped) -> 0.5.
    expected = {"t_coverage_at_2": 0.8, "t_gini_at_2": 0.32, "t_novelty_at_2": 2.0, "t_diversity_at_2": 0.5}
    assert metrics == pytest.approx(expected)


def test_diversity_of_three_items_and_without_vectors():
    # Row 0: cosines (0,1) = 0, (0,3) = 0 and (1,3) = 0 (zero vector) -> 1.
    # Row 1: cosines (0,2) = 1, (0,4) = (2,4) = 1/sqrt(2) -> 1 - (1 + sqrt(2)) / 3.
    top = np.array([[0, 1, 3], [0, 2, 4]])
    metrics = beyond_accuracy(top, 5, POPULARITY, VECTORS, k=3)
    assert metrics["diversity_at_3"] == pytest.approx((1 + 1 - (1 + math.sqrt(2)) / 3) / 2)
    assert beyond_accuracy(top[:1], 5, POPULARITY, VECTORS, k=3)["diversity_at_3"] == pytest.approx(1.0)
    assert "diversity_at_3" not in beyond_accuracy(top, 5, POPULARITY, None, k=3)


def test_rating_metrics():
    # Errors -1, 0, 2: RMSE sqrt((1 + 0 + 4) / 3), MAE (1 + 0 + 2) / 3.
    expected = {"rmse": math.sqrt(5 / 3), "mae": 1.0}
    assert rating_metrics(np.array([3.0, 4.0, 5.0]), np.array([4, 4, 3])) == pytest.approx(expected)
    assert rating_metrics(np.array([[3.0], [4.0], [5.0]]), np.array([4, 4, 3])) == pytest.approx(expected)
