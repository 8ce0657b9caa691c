"""Bad rows cost themselves, not the night: the job on a Parquet export of MovieLens-100K with planted faults."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import batch_recommend
from recsys_core.data import DataError
from recsys_core.serving import outputs
from recsys_core.serving.validation import Rules, check_rows
from tests.support import published

RUN_DATE = "2026-11-22"
YEAR_2100 = 4_102_444_800


def _export(ml100k, root, interactions=None, users=None, items=None):
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(interactions if interactions is not None else ml100k.ratings, root / "interactions.parquet")
    pq.write_table(users if users is not None else ml100k.users, root / "users.parquet")
    pq.write_table(items if items is not None else ml100k.items, root / "items.parquet")
    return root


def _faulty(ml100k):
    """The issue's table of bad inputs, planted into a faithful export."""
    bad = pa.table(
        {
            "user_id": ["1", "2", "3", "4", "5"],
            "item_id": ["no-such-item", "1", "1", "1", "1"],
            "rating": pa.array(np.array([4.0, np.nan, 9.0, -1.0, 3.0], np.float32)),  # a real NaN, not a null
            "timestamp": pa.array([880_000_000] * 4 + [YEAR_2100], pa.int64()),
        }
    )
    interactions = pa.concat_tables([ml100k.ratings, bad, ml100k.ratings.slice(0, 500)])
    users = ml100k.users
    ages = users["raw_user_age"].to_numpy().copy()
    ages[users["user_id"].to_pylist().index("10")] = np.nan
    ages[users["user_id"].to_pylist().index("11")] = -3.0
    users = users.set_column(2, "raw_user_age", pa.array(ages))
    users = pa.concat_tables([users, users.slice(20, 3)])
    items = ml100k.items.to_pandas()
    items.loc[items["item_id"] == "50", "movie_genres"] = pd.Series([["Electronics"]], index=[49])
    items = pa.Table.from_pandas(pd.concat([items, items.iloc[100:103]]), preserve_index=False)
    return interactions, users, items.cast(ml100k.items.schema)


def _ratings_of(ml100k, users, rows=None):
    ratings = ml100k.ratings if rows is None else ml100k.ratings.slice(0, rows)
    return int(pa.compute.sum(pa.compute.is_in(ratings["user_id"], value_set=pa.array(users))).as_py())


@pytest.fixture(scope="module")
def faulty_run(ml100k, ml100k_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("faulty")
    data = _export(ml100k, root / "warehouse", *_faulty(ml100k))
    output = root / "tables"
    args = ["--bundle", ml100k_bundle, "--output", str(output), "--run-date", RUN_DATE, "--reranker", "none"]
    manifest = batch_recommend.run(args + ["--data-source", "parquet", "--data-path", str(data)])
    dead = published(output, outputs.DEAD_LETTER)
    recs = published(output, outputs.RECOMMENDATIONS)
    return manifest, dead, recs


def test_every_bad_row_gets_a_labelled_dead_letter(faulty_run, ml100k):
    _, dead, _ = faulty_run
    reasons = dead.groupby(["table", "reason"]).size().to_dict()
    # Users 10 and 11 lose their rows (NaN and negative age), so their interactions name unknown users.
    orphaned = _ratings_of(ml100k, ["10", "11"])
    assert reasons == {
        ("interactions", "unknown_item"): 1,
        ("interactions", "nan"): 1,
        ("interactions", "out_of_range"): 2,
        ("interactions", "timestamp_out_of_window"): 1,
        ("interactions", "unknown_user"): orphaned + _ratings_of(ml100k, ["10", "11"], rows=500),
        ("interactions", "duplicate_event"): 500 - _ratings_of(ml100k, ["10", "11"], rows=500),
        ("users", "nan"): 1,
        ("users", "out_of_range"): 1,
        ("users", "duplicate_user"): 3,
        ("items", "duplicate_item"): 3,
    }
    assert set(dead[dead["reason"] == "out_of_range"]["value"]) == {"9.0", "-1.0", "-3.0"}
    assert dead[(dead["table"] == "users") & (dead["reason"] == "nan")]["value"].tolist() == ["nan"]
    assert dead[dead["reason"] == "unknown_item"]["value"].tolist() == ["no-such-item"]
    assert dead["source_file"].str.endswith(".parquet").all()


def test_counts_reconcile_and_the_night_goes_on(faulty_run, ml100k):
    manifest, dead, recs = faulty_run
    rows = manifest["input_rows"]
    used = 100_000 - _ratings_of(ml100k, ["10", "11"])
    assert rows["interactions"] == {
        "read": 100_505,
        "used": used,
        "dead_lettered": 100_505 - used,
        "footer_rows": 100_505,
    }
    assert rows["users"] == {"read": 946, "used": 941, "dead_lettered": 5, "footer_rows": 946}
    assert rows["items"] == {"read": 1685, "used": 1682, "dead_lettered": 3, "footer_rows": 1685}
    for table, counts in rows.items():
        assert counts["dead_lettered"] == (dead["table"] == table).sum()
    # Everyone else is served, including user 5 whose one rating from 2100 was dropped.
    assert recs["user_id"].nunique() == 941 and "5" in set(recs["user_id"])
    assert manifest["row_counts"][outputs.DEAD_LETTER] == len(dead) == sum(r["dead_lettered"] for r in rows.values())


def test_published_lists_have_unique_keys_and_distinct_items(faulty_run):
    _, _, recs = faulty_run
    assert not recs.duplicated(["user_id", "rank"]).any()
    assert not recs.duplicated(["user_id", "item_id"]).any()
    assert (recs.groupby("user_id").size() == 20).all()


def test_too_many_bad_rows_publish_nothing(ml100k, ml100k_bundle, tmp_path):
    ratings = ml100k.ratings.to_pandas()
    ratings.loc[ratings.index[:2_000], "rating"] = 7.0  # 2 % out of range
    data = _export(ml100k, tmp_path / "warehouse", interactions=pa.Table.from_pandas(ratings, preserve_index=False))
    output = tmp_path / "tables"
    args = ["--bundle", ml100k_bundle, "--output", str(output), "--run-date", RUN_DATE, "--reranker", "none"]
    with pytest.raises(DataError, match=r"2000 of 100000 interactions rows \(2\.0%\).*out_of_range: 2000.*nothing"):
        batch_recommend.run(args + ["--data-source", "parquet", "--data-path", str(data)])
    assert not (output / "_published").exists() and not list(output.rglob("*.parquet"))
    [record] = [json.loads(p.read_text()) for p in (output / "_runs").iterdir()]
    assert record["status"] == "failed" and "out_of_range: 2000" in record["reason"]
    # A looser threshold lets the same night through, without those rows.
    manifest = batch_recommend.run(
        args + ["--data-source", "parquet", "--data-path", str(data), "--max-bad-share", "0.05"]
    )
    assert manifest["input_rows"]["interactions"]["dead_lettered"] == 2_000


def test_row_checks_by_hand(ml100k):
    schema = ml100k.schema
    rules = Rules(schema, latest_timestamp=1_000)
    rows = pa.table(
        {
            "user_id": ["a", "", None, "d", "e"],
            "item_id": ["x", "x", "x", "x", "x"],
            "rating": [4.0, 4.0, 4.0, float("inf"), 5.0],
            "timestamp": [10, 10, 10, 10, 1_001],
            "extra": [1, 2, 3, 4, 5],
        }
    )
    valid, dead = check_rows(rows, "interactions", rules, "f.parquet")
    assert valid.column_names == ["user_id", "item_id", "rating", "timestamp"]
    assert valid["user_id"].to_pylist() == ["a"]
    assert dead.select(["reason", "column"]).to_pylist() == [
        {"reason": "null", "column": "user_id"},
        {"reason": "null", "column": "user_id"},
        {"reason": "nan", "column": "rating"},
        {"reason": "timestamp_out_of_window", "column": "timestamp"},
    ]
    users = ml100k.users.slice(0, 2).to_pandas()
    table = pa.Table.from_pandas(users, preserve_index=False).set_column(
        6, "user_zip_code", pa.array([b"55105", b"\xff\xfe"], pa.binary())
    )
    valid, dead = check_rows(table, "users", rules, "u.parquet")
    assert valid.num_rows == 1
    assert dead.to_pylist() == [
        {
            "table": "users",
            "reason": "not_utf8",
            "column": "user_zip_code",
            "value": r"b'\xff\xfe'",
            "source_file": "u.parquet",
        }
    ]
    with pytest.raises(ValueError, match=r"users file u\.parquet has no column 'user_zip_code'.*movielens\.json"):
        check_rows(table.drop_columns(["user_zip_code"]), "users", rules, "u.parquet")
