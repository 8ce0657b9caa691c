"""EASE and the bias baseline against independent computations and the MovieLens-100K reference figures."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recsys_core.data.tables import group_by_user
from recsys_core.evaluation.baselines import ease_item_weights, ease_top_k, fit_bias, item_cooccurrence

X = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 1], [1, 1, 1, 0]], np.float32)


def ratings_table(rows: list[tuple[str, str, float]]) -> pa.Table:
    users, items, values = zip(*rows, strict=True)
    return pa.table(
        {
            "user_id": pa.array(users),
            "item_id": pa.array(items),
            "rating": pa.array(values, pa.float32()),
            "timestamp": pa.array(range(len(rows)), pa.int64()),
        }
    )


def rated_lists(matrix: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(row) for row in matrix]


def test_item_cooccurrence_equals_the_dense_gram_and_counts_repeats_once():
    rng = np.random.default_rng(0)
    matrix = (rng.random((50, 12)) < 0.3).astype(np.float64)
    repeated = [np.concatenate([items, items[:1]]) for items in rated_lists(matrix)]
    np.testing.assert_array_equal(item_cooccurrence(repeated, 12, chunk=7), matrix.T @ matrix)


@pytest.mark.parametrize("l2", [0.5, 3.0])
def test_ease_weights_solve_the_zero_diagonal_ridge_regression(l2):
    weights = ease_item_weights(X.T @ X, l2)
    for j in range(X.shape[1]):  # column j regressed on the other columns, ridge as extra rows
        others = np.delete(np.arange(X.shape[1]), j)
        design = np.vstack([X[:, others], np.sqrt(l2) * np.eye(len(others))])
        target = np.concatenate([X[:, j], np.zeros(len(others))])
        expected = np.linalg.lstsq(design, target, rcond=None)[0]
        np.testing.assert_allclose(weights[others, j], expected, atol=1e-5)
        assert weights[j, j] == 0.0


def test_ease_top_k_skips_seen_items_and_ranks_by_score():
    weights = ease_item_weights(X.T @ X, 1.0)
    scores, indices = ease_top_k(rated_lists(X), weights, k=10, block_size=3)
    assert scores.shape == indices.shape == (4, 4)
    for user, row in enumerate(indices):
        unseen = np.flatnonzero(X[user] == 0)
        assert sorted(row[row >= 0]) == list(unseen) and np.sum(row < 0) == X[user].sum()
        np.testing.assert_allclose(scores[user, : len(unseen)], (X @ weights)[user, row[: len(unseen)]], rtol=1e-6)
        assert np.all(np.diff(scores[user, : len(unseen)]) <= 0) and np.all(np.isneginf(scores[user, len(unseen) :]))


def test_bias_model_matches_hand_computed_first_iteration():
    # mean 4; b_i = (1 + 0) / 2 = 0.5 and -1 / 1 for x, y; then b_a = (0.5 + 0) / 2, b_b = -0.5 / 1.
    model = fit_bias(ratings_table([("a", "x", 5.0), ("a", "y", 3.0), ("b", "x", 4.0)]), 0.0, 0.0, iterations=1)
    assert model.mean == pytest.approx(4.0)
    predicted = model.predict(pa.array(["a", "b", "c", "a"]), pa.array(["x", "y", "x", "w"]))
    np.testing.assert_allclose(predicted, [4.75, 2.5, 4.5, 4.25], rtol=1e-6)


def test_bias_model_converges_to_the_regularised_fixed_point():
    rng = np.random.default_rng(0)
    rows = [(f"u{rng.integers(6)}", f"i{rng.integers(5)}", float(rng.integers(1, 6))) for _ in range(40)]
    table = ratings_table(rows)
    model = fit_bias(table, reg_user=2.0, reg_item=3.0, iterations=200)
    residual = table["rating"].to_numpy() - model.predict(table["user_id"], table["item_id"])
    for column, ids, biases, reg in (
        ("user_id", model.user_ids, model.user_bias, 2.0),
        ("item_id", model.item_ids, model.item_bias, 3.0),
    ):
        keys = table[column].to_numpy(zero_copy_only=False)
        for key, bias in zip(ids.to_pylist(), biases, strict=True):  # sum of residuals = reg * bias at the optimum
            assert residual[keys == key].sum() == pytest.approx(reg * bias, abs=1e-4)


def test_baselines_reproduce_the_movielens_reference_figures(ml100k_split):
    train, test = ml100k_split
    predicted = fit_bias(train.ratings).predict(test.ratings["user_id"], test.ratings["item_id"])
    rmse = np.sqrt(np.mean((predicted - test.ratings["rating"].to_numpy()) ** 2))
    assert 0.93 <= rmse <= 0.95

    users, items = train.users["user_id"], train.items["item_id"]
    rated, _ = group_by_user(train.ratings, users, items)
    _, top = ease_top_k(rated, ease_item_weights(item_cooccurrence(rated, len(items)), 500.0), k=10)
    discounts = 1.0 / np.log2(np.arange(2, 12))
    ndcg = [
        (np.isin(top[user], relevant) * discounts).sum() / discounts[: min(10, len(relevant))].sum()
        for user, relevant in enumerate(group_by_user(test.ratings, users, items)[0])
        if len(relevant)
    ]
    assert 0.43 <= np.mean(ndcg) <= 0.45
