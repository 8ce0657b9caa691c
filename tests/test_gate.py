"""The publish gate's checks, each against counters worked out by hand."""

import pytest

from jobs.gate import Gate, failures, parse_metric_floors

HEALTHY = {"users_scored": 900, "fallback_users": 100, "users_short_of_final_k": 50, "distinct_items_recommended": 400}
METRICS = {"lists": {"final": {"ndcg_at_10": 0.41}}, "ranking": {"rmse": 0.93}}


def test_a_healthy_night_passes():
    assert failures(Gate(), HEALTHY, METRICS) == []
    assert failures(Gate(), {**HEALTHY, "recall_hits": 95, "recall_relevant": 100}, METRICS) == []


@pytest.mark.parametrize(
    ("changes", "gate", "expected"),
    [
        ({"users_short_of_final_k": 150}, Gate(), "only 85.0% of users have a full list (--min-full-list-share 0.9)"),
        ({"fallback_users": 1100}, Gate(), "55.0% of users get the popularity fallback"),
        ({"nan_scores": 3}, Gate(), "3 recommended rows have a NaN score"),
        ({}, Gate(min_distinct_items=500), "only 400 distinct items recommended (--min-distinct-items 500)"),
        ({"users_scored": 0, "fallback_users": 0}, Gate(), "no user was scored"),
        ({"recall_hits": 94, "recall_relevant": 100}, Gate(), "found 94.0% of the exact top-K items"),
        ({"recall_hits": 96, "recall_relevant": 100}, Gate(min_recall=0.97), "(--min-recall 0.97)"),
    ],
)
def test_each_check_names_its_figure_and_threshold(changes, gate, expected):
    found = failures(gate, {**HEALTHY, **changes}, METRICS)
    assert len(found) == 1 and expected in found[0]


def test_floors_on_the_bundles_offline_metrics():
    floors = parse_metric_floors(["lists.final.ndcg_at_10=0.45", "ranking.rmse=0.5", "ranking.nope=1"])
    found = failures(Gate(metric_floors=floors), HEALTHY, METRICS)
    assert found == [
        "the bundle's lists.final.ndcg_at_10 is 0.4100, below the floor 0.45",
        "the bundle has no metric 'ranking.nope' (--min-bundle-metric)",
    ]  # ranking.rmse 0.93 is above its floor: floors are lower bounds
    with pytest.raises(ValueError, match="not of the form metric.path=number"):
        parse_metric_floors(["lists.final.ndcg_at_10"])
