"""The publish gate's checks, each against counters worked out by hand."""

import pytest

from jobs.gate import Gate, failures, parse_metric_bounds

HEALTHY = {
    "users_scored": 900,
    "fallback_users": 100,
    "users_short_of_final_k": 50,
    "distinct_items_recommended": 400,
    "rows_written_item_embeddings": 1600,
    "rows_written_recommendations": 9_900,
}
METRICS = {"lists": {"final": {"ndcg_at_10": 0.41}}, "ranking": {"rmse": 0.93}}


def test_a_healthy_night_passes():
    assert failures(Gate(), HEALTHY, METRICS) == []
    assert failures(Gate(), {**HEALTHY, "recall_hits": 95, "recall_relevant": 100}, METRICS) == []


@pytest.mark.parametrize(
    ("changes", "gate", "expected"),
    [
        ({"users_short_of_final_k": 150}, Gate(), "only 85.0% of users have a full list (--min-full-list-share 0.9)"),
        ({"fallback_users": 1100}, Gate(), "55.0% of users get the popularity fallback"),
        ({"nan_scores": 3}, Gate(), "3 final scores of recommended rows are NaN or infinite"),
        ({"non_finite_ranking_scores": 7}, Gate(), "7 predicted ratings of the re-ranker are NaN or infinite"),
        ({"non_finite_list_scores": 2}, Gate(), "2 list-ranker scores are NaN"),
        ({"non_finite_user_embeddings": 1}, Gate(), "1 user embeddings are NaN"),
        ({"non_finite_item_embeddings": 4}, Gate(), "4 item embeddings are NaN"),
        ({"non_finite_retrieval_scores": 5}, Gate(), "5 retrieval scores are NaN"),
        # A collapsed tower: 60 distinct items where 1 600 could be (3.75 %).
        ({"distinct_items_recommended": 60}, Gate(), "hold 60 distinct items of 1600 they could hold (3.8%"),
        # Few rows: the share is of the rows (9 users x 10), not of the catalogue.
        (
            {
                "users_scored": 9,
                "fallback_users": 0,
                "users_short_of_final_k": 0,
                "distinct_items_recommended": 4,
                "rows_written_recommendations": 90,
            },
            Gate(),
            "hold 4 distinct items of 90",
        ),
        ({}, Gate(min_distinct_items=500), "only 400 distinct items recommended (--min-distinct-items 500)"),
        ({"users_scored": 0, "fallback_users": 0}, Gate(), "no user was scored"),
        ({"recall_hits": 94, "recall_relevant": 100}, Gate(), "found 94.0% of the exact top-K items"),
        ({"recall_hits": 96, "recall_relevant": 100}, Gate(min_recall=0.97), "(--min-recall 0.97)"),
    ],
)
def test_each_check_names_its_figure_and_threshold(changes, gate, expected):
    found = failures(gate, {**HEALTHY, **changes}, METRICS)
    assert len(found) == 1 and expected in found[0]


def test_floors_and_ceilings_on_the_bundles_offline_metrics():
    floors = parse_metric_bounds(["lists.final.ndcg_at_10=0.45", "ranking.rmse=0.5", "ranking.nope=1"])
    found = failures(Gate(metric_floors=floors), HEALTHY, METRICS)
    assert found == [
        "the bundle's lists.final.ndcg_at_10 is 0.4100, below the floor 0.45",
        "the bundle has no metric 'ranking.nope' (--min-bundle-metric)",
    ]  # ranking.rmse 0.93 is above its floor: floors are lower bounds
    ceilings = parse_metric_bounds(["ranking.rmse=0.9", "lists.final.ndcg_at_10=1"], "--max-bundle-metric")
    assert failures(Gate(metric_ceilings=ceilings), HEALTHY, METRICS) == [
        "the bundle's ranking.rmse is 0.9300, above the ceiling 0.9"
    ]
    with pytest.raises(ValueError, match="not of the form metric.path=number"):
        parse_metric_bounds(["lists.final.ndcg_at_10"])


@pytest.mark.parametrize("bounds", [{"metric_floors": {"ranking.rmse": 0.5}}, {"metric_ceilings": {"ranking.rmse": 2}}])
def test_a_nan_metric_fails_its_floor_and_its_ceiling(bounds):
    found = failures(Gate(**bounds), HEALTHY, {"ranking": {"rmse": float("nan")}})
    assert len(found) == 1 and "the bundle's ranking.rmse is nan" in found[0]


def test_a_night_far_from_the_last_ones_is_reported_with_its_figures(caplog):
    from jobs.changes import warn_on_changes

    def night(run_id, fallback, distinct, kept):
        overlap = {"previous_run_id": "2026-11-20-xyz", "users": 300, "mean_share": kept}
        return {"run_id": run_id, "fallback_share": fallback, "counters": {"distinct_items_recommended": distinct},
                "list_overlap": overlap}  # fmt: skip

    history = [night("2026-11-21-abc", 0.10, 400, 0.8), night("2026-11-20-xyz", 0.11, 390, 0.6)]
    warn_on_changes(history, night("today", 0.12, 380, 0.5))
    warn_on_changes([], night("today", 0.9, 1, 0.0))  # the first night has nothing to compare with
    assert caplog.text == ""
    warn_on_changes(history, night("today", 0.25, 150, 0.3))
    assert "25.0% of users are unknown to the bundle or have no history, up from 10.0% in run 2026-11-21-abc" in (
        caplog.text
    )
    assert "the lists hold 150 distinct items, down from 400 in run 2026-11-21-abc" in caplog.text
    assert "keep 30.0% of their items from run 2026-11-20-xyz (300 users compared), against 70.0% usually" in (
        caplog.text
    )
