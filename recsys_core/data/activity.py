"""What the interactions say about each item as of the newest one: its popularity in time windows and its age.

The clock is the newest interaction, not the run date, so that the job and the
offline protocol compute the same from the same rows. The job computes
`ItemActivity` with Beam from its checked rows (`jobs.transforms.Activity`); the
protocol with `item_activity`. The fallback and the popularity prior order by
`popularity`; the list ranker reads the rest (`list_features`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_core.data.tables import item_counts, positions
from recsys_core.schema import ITEM_ID

ALL_TIME = 0  # a popularity window of every interaction
DAY_SECONDS = 86_400
RECENT_WINDOWS_DAYS = (7, 30)  # the windows whose counts the list ranker reads, besides all time
NEVER = -1  # `first_seen` of an item without interactions


def newest_time(ratings: pa.Table) -> int | None:
    """The time of the newest interaction (seconds): the clock of recent popularity; None without any."""
    newest = pc.max(ratings["timestamp"]).as_py() if ratings.num_rows else None
    return None if newest is None else int(newest)


def window_start(newest: int | None, window_days: float) -> int | None:
    """The first second a popularity window of `window_days` days ending at `newest` counts (exclusive bound).

    None (count everything) for `ALL_TIME` or without interactions.
    """
    if window_days == ALL_TIME or newest is None:
        return None
    return newest - int(round(window_days * DAY_SECONDS))


def trending(recent: np.ndarray, all_time: np.ndarray) -> np.ndarray:
    """`[items]` float32 popularity order: `recent` counts, ties broken by `all_time` counts.

    `recent + all_time / (max(all_time) + 1)`: the fraction never outweighs one recent
    interaction, so a short window whose counts are mostly 0 still orders its tail.
    """
    all_time = np.asarray(all_time, np.float64)
    return (np.asarray(recent, np.float64) + all_time / (all_time.max(initial=0.0) + 1.0)).astype(np.float32)


def counts_since(ratings: pa.Table, item_ids: pa.Array, since: int | None) -> np.ndarray:
    """`[len(item_ids)]` float32 interactions of each item after `since` (all of them with None)."""
    if since is not None:
        ratings = ratings.filter(pc.greater(ratings["timestamp"], since))
    return item_counts(ratings, item_ids)


def item_popularity(ratings: pa.Table, item_ids: pa.Array, window_days: float = ALL_TIME) -> np.ndarray:
    """`[len(item_ids)]` float32 popularity of each item as of the newest interaction of `ratings`.

    With `ALL_TIME`, its interaction count (`item_counts`); otherwise its interactions
    within the last `window_days` days up to the newest one, ties broken by all-time
    counts (`trending`).
    """
    return item_activity(ratings, item_ids, window_days).popularity


def windows_counted(window_days: float) -> list[float]:
    """The windows (days) whose counts an `ItemActivity` with a `window_days` popularity is built from."""
    return sorted({*RECENT_WINDOWS_DAYS, window_days} - {ALL_TIME})


def first_seen(ratings: pa.Table, item_ids: pa.Array) -> np.ndarray:
    """`[len(item_ids)]` int64 time of each item's first interaction (seconds), `NEVER` without one."""
    rows = positions(ratings[ITEM_ID], item_ids)
    known = rows >= 0
    times = np.full(len(item_ids), np.iinfo(np.int64).max, np.int64)
    np.minimum.at(times, rows[known], ratings["timestamp"].to_numpy()[known].astype(np.int64))
    return np.where(times == np.iinfo(np.int64).max, NEVER, times)


@dataclasses.dataclass(frozen=True)
class ItemActivity:
    """Each catalogue item's interactions as of the newest one.

    Attributes:
        popularity: `[items]` float32 the order of the fallback and the popularity prior, in the chosen
            window (`item_popularity`).
        recent: `[items, len(RECENT_WINDOWS_DAYS) + 1]` float32 interactions in each of `RECENT_WINDOWS_DAYS`
            up to the newest one, then all time.
        first_seen: `[items]` int64 time of each item's first interaction, `NEVER` without one.
        newest: time of the newest interaction (seconds), None without any.
    """

    popularity: np.ndarray
    recent: np.ndarray
    first_seen: np.ndarray
    newest: int | None

    @classmethod
    def from_counts(
        cls, newest: int | None, window_days: float, all_time: np.ndarray, first_seen: np.ndarray, windows: dict
    ) -> ItemActivity:
        """The activity from its counts: `all_time` `[items]` and `windows` `{days: [items] counts}` of every
        window of `windows_counted(window_days)`."""
        popularity = all_time if window_days == ALL_TIME else trending(windows[window_days], all_time)
        recent = np.stack([*(windows[days] for days in RECENT_WINDOWS_DAYS), all_time], axis=1)
        return cls(popularity, recent, first_seen, newest)

    @classmethod
    def none(cls, items: int) -> ItemActivity:
        """The activity of `items` items without interactions."""
        return cls(
            np.zeros(items, np.float32),
            np.zeros((items, len(RECENT_WINDOWS_DAYS) + 1), np.float32),
            np.full(items, NEVER, np.int64),
            None,
        )

    def age_days(self) -> np.ndarray:
        """`[items]` days from each item's first interaction to the newest one (0 without one)."""
        if self.newest is None:
            return np.zeros(len(self.first_seen), np.float32)
        age = np.where(self.first_seen == NEVER, 0, self.newest - self.first_seen) / DAY_SECONDS
        return age.astype(np.float32)

    def days_since(self, times: np.ndarray) -> np.ndarray:
        """`[n]` days from each of `times` (seconds; negative: none) to the newest interaction, 0 where none."""
        times = np.asarray(times, np.int64)
        if self.newest is None:
            return np.zeros(len(times), np.float32)
        return (np.where(times >= 0, np.maximum(self.newest - times, 0), 0) / DAY_SECONDS).astype(np.float32)


def item_activity(ratings: pa.Table, item_ids: pa.Array, window_days: float = ALL_TIME) -> ItemActivity:
    """The `ItemActivity` of `item_ids` in `ratings`, with the popularity of a `window_days` window."""
    newest = newest_time(ratings)
    windows = {
        days: counts_since(ratings, item_ids, window_start(newest, days)) for days in windows_counted(window_days)
    }
    all_time = item_counts(ratings, item_ids)
    return ItemActivity.from_counts(newest, window_days, all_time, first_seen(ratings, item_ids), windows)
