"""The offline evaluation scores the lists the job writes, with the job's own code."""

import numpy as np
import pyarrow as pa
import pytest

from recsys_core.data.splits import random_split
from recsys_core.evaluation import offline
from recsys_core.serving import outputs
from recsys_core.serving.recommend import BundleScorer, RecommendSettings
from tests.support import published


@pytest.fixture(scope="module")
def held_out(ml100k_split):
    return offline.HeldOut.build(*ml100k_split)


def test_most_popular_through_the_protocol_matches_the_published_reference(held_out):
    # GUIDE §5: most-popular on the tutorials' split, training items excluded, every test item relevant.
    figures = offline.list_figures(offline.popular_lists(held_out, 100), held_out)
    assert figures["recall_at_10"] == pytest.approx(0.113, abs=1e-3)
    assert figures["recall_at_100"] == pytest.approx(0.421, abs=1e-3)
    assert figures["ndcg_at_10"] == pytest.approx(0.221, abs=1e-3)
    assert figures["recall_at_20"] == pytest.approx(0.165, abs=1e-3)
    assert figures["coverage_at_20"] == pytest.approx(0.05, abs=0.01)
    assert sum(figures[f"popularity_share_{b}"] for b in offline.POPULARITY_BINS) == pytest.approx(1.0)
    assert figures["popularity_share_201+"] > 0.9  # the most popular items, by construction


def test_held_out_sets_hold_test_items_and_the_liked_subset(held_out, ml100k_split):
    train, test = ml100k_split
    ratings = test.ratings.to_pandas()
    assert len(held_out.user_ids) == ratings["user_id"].nunique()
    items = train.items["item_id"].to_pylist()
    user = held_out.user_ids[0].as_py()
    mine = ratings[ratings["user_id"] == user]
    assert sorted(items[i] for i in held_out.relevant[0]) == sorted(mine["item_id"])
    assert sorted(items[i] for i in held_out.liked[0]) == sorted(mine[mine["rating"] >= 4]["item_id"])
    assert held_out.popularity.sum() == 80_000


def test_ease_baseline_matches_the_published_reference(held_out):
    figures = offline.list_figures(offline.ease_lists(held_out, 500.0, 100), held_out)
    assert figures["ndcg_at_10"] == pytest.approx(0.443, abs=0.003)
    assert figures["recall_at_100"] == pytest.approx(0.697, abs=0.003)


@pytest.mark.parametrize("reranker", ["auto", "list"])
def test_offline_lists_are_the_lists_the_batch_job_writes(ml100k_bundle, ml100k, tmp_path, reranker):
    """The same bundle, data and settings: `JobLists` (offline) and the Beam job's table agree row for row."""
    from jobs import batch_recommend

    args = ["--bundle", ml100k_bundle, "--output", str(tmp_path), "--run-date", "2026-11-22", "--reranker", reranker]
    manifest = batch_recommend.run(args)
    written = published(tmp_path, outputs.RECOMMENDATIONS)
    parameters = manifest["parameters"]
    settings = RecommendSettings(
        top_k=parameters["top_k"],
        final_k=parameters["final_k"],
        reranker=parameters["reranker"],
        timestamp=parameters["run_date_timestamp"],
        run_id="offline",
        blend_weight=parameters["blend_weight"],
        popularity_weight=parameters["popularity_weight"],
    )
    everyone = offline.HeldOut.build(ml100k, ml100k)  # the job sees every rating; every user is scored
    window = parameters["popularity_window_days"]
    from_kernel = offline.JobLists(BundleScorer(ml100k_bundle), everyone, window)(settings)
    from_table = offline.rows_to_lists(
        pa.Table.from_pandas(written, preserve_index=False),
        everyone.user_ids,
        ml100k.items["item_id"],
        settings.final_k,
    )
    np.testing.assert_array_equal(from_kernel, from_table)


def test_bundle_records_the_choices_made_on_validation(ml100k_bundle):
    import json
    import os

    with open(os.path.join(ml100k_bundle, "manifest.json")) as handle:
        manifest = json.load(handle)
    choice = manifest["reranking"]
    scores = choice["validation_scores"]
    best = max(scores, key=scores.get)
    best_without = max((key for key in scores if key.startswith("none@")), key=scores.get)
    chosen = f"{choice['reranker']}@{choice['blend_weight']:g}+{choice['popularity_weight']:g}"
    gain, list_gain = choice["best_reranker_gain"], choice["list_ranker"]["gain"]
    # The list ranker replaces the blends when its out-of-fold lists beat theirs on validation.
    assert (choice["reranker"] == "list") == (list_gain["mean"] > 0)
    if choice["reranker"] != "list":
        # The best re-ranker is kept only when its gain over no re-ranker is beyond two standard errors.
        assert chosen == (best if gain["mean"] > 2 * gain["standard_error"] else best_without)
    # The popularity window is the one whose most-popular lists scored best on validation.
    windows = choice["popularity_window_scores"]
    assert f"{choice['popularity_window_days']:g}" == max(windows, key=windows.get)
    lists = manifest["metrics"]["lists"]
    assert {"final", "final_list", "retrieval", "most_popular", "most_popular_recent", "ease"} <= set(lists)
    # Every user of ML-100K's random test split has training history.
    assert lists["final"]["with_history"]["users"] == 942 and "without_history" not in lists["final"]
    assert lists["final"] == lists[f"final_{choice['reranker']}"] or choice["reranker"] == "none"
    assert manifest["split"]["fit"] + manifest["split"]["validation"] == 80_000


def test_validation_is_carved_from_training_only(ml100k_split):
    train, test = ml100k_split
    fit, validation = random_split(train, 0.1, 42)
    key = ["user_id", "item_id", "timestamp"]
    test_keys = set(map(tuple, test.ratings.select(key).to_pandas().to_numpy().tolist()))
    validation_keys = set(map(tuple, validation.ratings.select(key).to_pandas().to_numpy().tolist()))
    assert validation.ratings.num_rows == 8_000 and fit.ratings.num_rows == 72_000
    assert not validation_keys & test_keys


def test_catalogues_beyond_ease_max_items_leave_ease_out_and_keep_the_rest(ml100k_bundle, ml100k_split):
    from recsys_core.config import experiment
    from recsys_core.evaluation import protocol

    config = experiment("ml100k")
    config.training.blend_weights, config.training.popularity_weights = (0.5,), (0.0,)
    config.training.ease_max_items = 1_000  # ML-100K has 1 682 items
    config.list_ranker.members = 1  # as the bundle's: the ranker's size does not matter here
    train, test = ml100k_split
    fit, validation = random_split(train, 0.1, 42)
    choice, _ = protocol.select(ml100k_bundle, config, fit, validation)
    assert choice["ease_l2"] is None and choice["ease_validation_scores"] == {}
    lists, gain = protocol.lists_on_test(ml100k_bundle, config, choice, train, test)
    assert "ease" not in lists and {"final", "retrieval", "most_popular"} <= set(lists)
    # The list ranker's paired test gain is the difference of the two lists' NDCG@10 (every test user holds an item).
    assert gain["over"] == f"final_{choice['without_list_ranker']}"
    difference = lists["final_list"]["ndcg_at_10"] - lists[gain["over"]]["ndcg_at_10"]
    assert gain["mean"] == pytest.approx(difference, abs=1e-9) and gain["standard_error"] > 0
