"""What moved from the last published night to this one: warnings, with their figures, for whoever runs the job.

Nothing here refuses a run (the publish gate does, `jobs.gate`): these are the
changes a person should look at before consumers notice them.
"""

from __future__ import annotations

import logging
import statistics

import pyarrow as pa
import pyarrow.compute as pc

from recsys_core.serving import outputs

SAMPLE_USERS = 20_000  # users whose lists are compared with the last published run (a bounded read)
HISTORY_RUNS = 7  # the runs whose list overlap makes "usual"
log = logging.getLogger(__name__)
_COLUMNS = ["user_id", "item_id"]


def list_overlap(root: str, files: list[str], previous: dict) -> dict | None:
    """How much of this run's lists the last published run already recommended.

    Args:
        root: the output root; `files` and the pointer's files are relative to it.
        files: this run's recommendations files, in path order.
        previous: the pointer of the last published run (`recsys_core.serving.outputs.read_pointer`).

    Returns `{previous_run_id, users, mean_share}`: over the first `SAMPLE_USERS`
    users of `files` that the previous run also served, the mean share of each
    user's items that were in their previous list; None when no user is in both.
    """
    sample = _first_users(root, files)
    before = outputs.files_dataset(root, previous["files"][outputs.RECOMMENDATIONS]).to_table(
        columns=_COLUMNS, filter=pc.field("user_id").isin(pc.unique(sample["user_id"]))
    )
    now = sample.filter(pc.is_in(sample["user_id"], before["user_id"]))
    if now.num_rows == 0:
        return None
    listed = _items_per_user(now, "listed")
    kept = _items_per_user(now.join(before, keys=_COLUMNS, join_type="inner"), "kept")
    per_user = listed.join(kept, "user_id", join_type="left outer")  # a user with nothing kept: null
    shares = pc.divide(pc.cast(pc.fill_null(per_user["kept"], 0), pa.float64()), per_user["listed"])
    return {
        "previous_run_id": previous["manifest"]["run_id"],
        "users": per_user.num_rows,
        "mean_share": round(pc.mean(shares).as_py(), 6),
    }


def _items_per_user(rows: pa.Table, name: str) -> pa.Table:
    """`(user_id, name)`: how many rows each user has."""
    counted = rows.group_by("user_id").aggregate([("item_id", "count")])
    return pa.table({"user_id": counted["user_id"], name: counted["item_id_count"]})


def _first_users(root: str, files: list[str]) -> pa.Table:
    """`(user_id, item_id)` rows of the first `SAMPLE_USERS` users of `files`, reading no more files than needed."""
    tables, users = [], 0
    for path in files:
        table = outputs.files_dataset(root, [path]).to_table(columns=_COLUMNS)
        tables.append(table)
        users += len(pc.unique(table["user_id"]))
        if users >= SAMPLE_USERS:
            break
    rows = pa.concat_tables([pa.table({c: pa.array([], pa.string()) for c in _COLUMNS}), *tables])
    first = pc.unique(rows["user_id"])[:SAMPLE_USERS]
    return rows.filter(pc.is_in(rows["user_id"], first))


def warn_on_changes(history: list[dict], record: dict) -> None:
    """Logs what moved far more than usual against the last succeeded runs (newest first in `history`):
    the share of users the model cannot serve (more than doubled), the distinct items of all lists (less than
    half: a query tower that collapsed, a catalogue cut short), and the share of each user's list kept from
    the last published run (less than half its usual value: a bundle or input that changed everything)."""
    if not history:
        return
    previous = history[0]
    share, before = record["fallback_share"], previous.get("fallback_share")
    if before is not None and share > max(2 * before, before + 0.05):
        log.warning(
            "%.1f%% of users are unknown to the bundle or have no history, up from %.1f%% in run %s: "
            "is the bundle older than the users, or are the interactions incomplete?",
            100 * share,
            100 * before,
            previous["run_id"],
        )
    distinct = record["counters"].get("distinct_items_recommended", 0)
    distinct_before = previous.get("counters", {}).get("distinct_items_recommended")
    if distinct_before and distinct < distinct_before / 2:
        log.warning(
            "the lists hold %d distinct items, down from %d in run %s: has the query tower collapsed, or the "
            "catalogue shrunk?",
            distinct,
            distinct_before,
            previous["run_id"],
        )
    overlap = record.get("list_overlap")
    usual = [r["list_overlap"]["mean_share"] for r in history[:HISTORY_RUNS] if r.get("list_overlap")]
    if overlap and usual and overlap["mean_share"] < statistics.median(usual) / 2:
        log.warning(
            "the lists keep %.1f%% of their items from run %s (%d users compared), against %.1f%% usually (median "
            "of the last %d runs): was the bundle retrained on other data, or did the interactions change?",
            100 * overlap["mean_share"],
            overlap["previous_run_id"],
            overlap["users"],
            100 * statistics.median(usual),
            len(usual),
        )
