"""The job's Beam counters: every name made here, incremented by the steps and read back by the launcher
(`batch_recommend`), the publish gate (`gate`) and the run manifest.

The kernel's per-block counts (`recommend_block`: `users_scored`, `fallback_users`, ...)
are counted under their own names as they come.
"""

from __future__ import annotations

import pyarrow as pa
from apache_beam.metrics import Metrics

NAMESPACE = "recsys"
NON_FINITE_ITEM_EMBEDDINGS = "non_finite_item_embeddings"
DISTINCT_ITEMS_RECOMMENDED = "distinct_items_recommended"


def rows_read(table: str) -> str:
    return f"rows_read_{table}"


def rows_dead(table: str) -> str:
    return f"rows_dead_{table}"


def dead_prefix(table: str) -> str:
    """The prefix of `table`'s per-reason dead-letter counters: `dead_<table>_<reason>`."""
    return f"dead_{table}_"


def rows_written(table: str) -> str:
    return f"rows_written_{table}"


def counter(name: str):
    """The Beam counter `name` of this job's namespace."""
    return Metrics.counter(NAMESPACE, name)


def count_dead(dead: pa.Table) -> None:
    """Counts dead letters per table (`rows_dead`) and per reason (`dead_prefix(table) + reason`)."""
    if not dead.num_rows:
        return
    for row in dead.group_by(["table", "reason"]).aggregate([([], "count_all")]).to_pylist():
        counter(rows_dead(row["table"])).inc(row["count_all"])
        counter(dead_prefix(row["table"]) + row["reason"]).inc(row["count_all"])
