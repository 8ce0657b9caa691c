"""Popularity as of the newest interaction: the fallback's order and the popularity prior."""

import numpy as np
import pyarrow as pa
import pytest

from recsys_core.data.activity import ALL_TIME, DAY_SECONDS, NEVER, item_activity, item_popularity, window_start

NEWEST = 1_000 * DAY_SECONDS


def _ratings(events: list[tuple[str, float]]) -> pa.Table:
    """(item, days before the newest interaction) pairs, all by one user."""
    return pa.table(
        {
            "user_id": pa.array(["u"] * len(events), pa.string()),
            "item_id": pa.array([item for item, _ in events], pa.string()),
            "rating": pa.array([4.0] * len(events), pa.float32()),
            "timestamp": pa.array([NEWEST - int(days * DAY_SECONDS) for _, days in events], pa.int64()),
        }
    )


def test_a_window_counts_its_last_days_and_breaks_ties_by_all_time_counts():
    ratings = _ratings(
        [("a", 0), ("a", 2), ("a", 20), ("a", 20), ("a", 20)]  # 2 in the last week, 5 in all
        + [("b", 1), ("b", 3)]  # 2 and 2
        + [("c", 30)] * 4  # 0 and 4
        + [("d", 7)]  # exactly a week before the newest: outside a 7-day window
    )
    items = pa.array(["a", "b", "c", "d", "e"])
    np.testing.assert_array_equal(item_popularity(ratings, items), [5, 2, 4, 1, 0])
    week = item_popularity(ratings, items, 7.0)
    # Recent counts, plus all-time counts / (most all-time counts + 1): never more than one recent interaction.
    np.testing.assert_allclose(week, [2 + 5 / 6, 2 + 2 / 6, 4 / 6, 1 / 6, 0], rtol=1e-6)
    assert list(np.argsort(-week, kind="stable")) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(item_popularity(ratings, items, 2.5), [2 + 5 / 6, 1 + 2 / 6, 4 / 6, 1 / 6, 0], rtol=1e-6)


def test_all_time_and_empty_tables_count_everything():
    assert window_start(None, 14.0) is None and window_start(NEWEST, ALL_TIME) is None
    assert window_start(NEWEST, 1.5) == NEWEST - 129_600
    empty = _ratings([])
    np.testing.assert_array_equal(item_popularity(empty, pa.array(["a"]), 14.0), [0.0])


@pytest.mark.parametrize("window", [ALL_TIME, 14.0])
def test_the_fallback_on_the_temporal_split_is_the_recent_popular_baseline(ml100k, window):
    """Most popular unseen in the last 14 days before the cut beats all-time counts on ML-100K's future
    (GUIDE §5: 0.414 against 0.340 NDCG@10, with ties by item index; here ties go by all-time counts)."""
    from recsys_core.data.splits import temporal_split
    from recsys_core.evaluation import offline

    held_out = offline.HeldOut.build(*temporal_split(ml100k, 0.2))
    top = offline.popular_lists(held_out, 10, window)
    overall = offline.list_figures(top, held_out, 10)["ndcg_at_10"]
    groups = offline.figures_by_history(top, held_out)
    assert (groups["with_history"]["users"], groups["without_history"]["users"]) == (109, 192)
    # The groups partition the users: the overall mean is their users-weighted mean.
    weighted = sum(g["users"] * g["ndcg_at_10"] for g in groups.values()) / 301
    assert overall == pytest.approx(weighted)
    expected = {ALL_TIME: (0.340, 0.146, 0.451), 14.0: (0.412, 0.234, 0.514)}[window]
    got = (overall, groups["with_history"]["ndcg_at_10"], groups["without_history"]["ndcg_at_10"])
    assert got == pytest.approx(expected, abs=0.002)


def test_activity_counts_each_window_and_dates_each_item_from_its_first_interaction():
    ratings = _ratings([("a", 0), ("a", 10), ("a", 40), ("b", 3), ("b", 29.5), ("c", 30)])
    activity = item_activity(ratings, pa.array(["a", "b", "c", "z"]), 7.0)
    assert activity.newest == NEWEST
    # Columns: the last 7 days, the last 30 (a window's first second is excluded: "c" at exactly 30 days), all time.
    np.testing.assert_array_equal(activity.recent, [[1, 2, 3], [1, 2, 2], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(activity.popularity, item_popularity(ratings, pa.array(["a", "b", "c", "z"]), 7.0))
    np.testing.assert_array_equal(
        activity.first_seen, [NEWEST - 40 * DAY_SECONDS, NEWEST - 29.5 * DAY_SECONDS, NEWEST - 30 * DAY_SECONDS, NEVER]
    )
    np.testing.assert_allclose(activity.age_days(), [40, 29.5, 30, 0])
    # A user's recency: days from their last interaction to the newest one; none (-1) counts 0.
    np.testing.assert_allclose(activity.days_since(np.array([NEWEST - DAY_SECONDS // 2, -1, NEWEST])), [0.5, 0, 0])


def test_activity_without_interactions_is_empty():
    activity = item_activity(_ratings([]), pa.array(["a", "b"]), 14.0)
    assert activity.newest is None
    np.testing.assert_array_equal(activity.recent, np.zeros((2, 3)))
    np.testing.assert_array_equal(activity.first_seen, [NEVER, NEVER])
    np.testing.assert_array_equal(activity.age_days(), [0, 0])
