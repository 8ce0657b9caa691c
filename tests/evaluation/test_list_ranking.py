"""The list ranker learns from the validation part as of its query time: no feature or label reads later data."""

import numpy as np
import pyarrow.compute as pc
import pytest

from recsys_core.data.splits import temporal_split
from recsys_core.serving.list_features import LIST_FEATURES


@pytest.fixture(scope="module")
def captured(ml100k_bundle, ml100k):
    """What `protocol.select` hands the list ranker on ML-100K's temporal split (fit < validation < test)."""
    from recsys_core.config import experiment
    from recsys_core.evaluation import list_ranking, protocol

    train, test = temporal_split(ml100k, 0.2)
    fit, validation = temporal_split(train, 0.1)
    config = experiment("ml100k")
    config.training.blend_weights, config.training.popularity_weights = (0.5,), (0.0, 0.5)
    config.training.popularity_windows_days = (0.0, 14.0)
    config.list_ranker.members = 1
    seen = {}
    labels, fit_ranker = list_ranking.list_labels, list_ranking.fit_list_ranker

    def spy_labels(candidates, relevant, liked):
        seen["candidates"] = candidates
        return labels(candidates, relevant, liked)

    def spy_fit(features, grades, fold, ranker_config, seed):
        seen.update(features=features, labels=grades)
        return fit_ranker(features, grades, fold, ranker_config, seed)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(list_ranking, "list_labels", spy_labels)
        patch.setattr(list_ranking, "fit_list_ranker", spy_fit)
        selection, ranker = protocol.select(ml100k_bundle, config, fit, validation)
    return fit, validation, test, selection, ranker, seen


def _frame(data):
    return data.ratings.to_pandas()


def test_labels_are_the_validation_items_among_the_candidates(captured):
    fit, validation, test, _, _, seen = captured
    users = pc.unique(validation.ratings["user_id"].combine_chunks()).to_pylist()
    item_ids = np.array(fit.items["item_id"].to_pylist(), dtype=object)
    held, later = _frame(validation).groupby("user_id")["item_id"], _frame(test).groupby("user_id")["item_id"]
    candidates, labels = seen["candidates"], seen["labels"]
    assert len(users) == len(candidates) and (labels > 0).sum() > 100
    for row, user in enumerate(users):
        mine = set(held.get_group(user))
        future = set(later.get_group(user)) - mine if user in later.groups else set()
        valid = candidates[row] >= 0
        ids = item_ids[candidates[row][valid]]
        np.testing.assert_array_equal(labels[row][valid] > 0, [i in mine for i in ids])
        assert not any(i in future for i in ids[labels[row][valid] > 0])


def test_features_use_only_interactions_up_to_the_query_time(captured):
    fit, validation, test, selection, _, seen = captured
    ratings = _frame(fit)
    query_time = ratings["timestamp"].max()
    assert query_time <= _frame(validation)["timestamp"].min() <= _frame(test)["timestamp"].min()
    features, candidates = seen["features"], seen["candidates"]
    valid = candidates >= 0
    # Popularity as of the query time, in the chosen window (ties by all-time counts), from the fitting part alone.
    window = selection["popularity_window_days"]
    order = fit.items["item_id"].to_pylist()
    counts = ratings["item_id"].value_counts().reindex(order, fill_value=0).to_numpy().astype(float)
    popularity = counts
    if window:
        recent = ratings[ratings["timestamp"] > query_time - window * 86_400]
        popularity = recent["item_id"].value_counts().reindex(order, fill_value=0).to_numpy() + counts / (
            counts.max() + 1
        )
    expected = np.log1p(popularity[np.maximum(candidates, 0)])
    np.testing.assert_allclose(features[..., LIST_FEATURES.index("popularity")][valid], expected[valid], rtol=1e-5)
    # The item's recent counts and age, and the user's recency, as of the query time, from the fitting part.
    week = ratings[ratings["timestamp"] > query_time - 7 * 86_400]["item_id"].value_counts()
    expected = np.log1p(week.reindex(order, fill_value=0).to_numpy()[np.maximum(candidates, 0)])
    np.testing.assert_allclose(
        features[..., LIST_FEATURES.index("popularity_7_days")][valid], expected[valid], rtol=1e-5
    )
    first = ratings.groupby("item_id")["timestamp"].min().reindex(order).fillna(query_time).to_numpy()  # unseen: 0
    age = np.log1p((query_time - first[np.maximum(candidates, 0)]) / 86_400)
    np.testing.assert_allclose(features[..., LIST_FEATURES.index("item_age")][valid], age[valid], rtol=1e-5)
    last = ratings.groupby("user_id")["timestamp"].max()
    # Each user's activity counts their items in the fitting part only.
    users = pc.unique(validation.ratings["user_id"].combine_chunks()).to_pylist()
    distinct = ratings.groupby("user_id")["item_id"].nunique().reindex(users, fill_value=0).to_numpy()
    rows = np.flatnonzero(valid.any(axis=1))
    activity = features[rows, 0, LIST_FEATURES.index("user_activity")]
    np.testing.assert_allclose(activity, np.log1p(distinct[rows]), rtol=1e-6)
    recency = np.log1p((query_time - last.reindex(users).to_numpy()[rows]) / 86_400)
    np.testing.assert_allclose(features[rows, 0, LIST_FEATURES.index("user_recency")], recency, rtol=1e-5)
    assert len(rows) > 50  # users with history in the fitting part: the ranker's lists


def test_the_choice_is_recorded_with_its_out_of_fold_gain(captured):
    _, _, _, selection, ranker, seen = captured
    record = selection["list_ranker"]
    assert record["features"] == list(LIST_FEATURES) and record["rating_model"] == "ranking"
    assert (selection["reranker"] == "list") == (record["gain"]["mean"] > 0)
    scores = ranker(seen["features"][:4]).numpy()
    assert scores.shape == seen["candidates"][:4].shape and np.isfinite(scores).all()
