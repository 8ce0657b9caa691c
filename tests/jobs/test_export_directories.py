"""Input directories as Spark, Hive or Beam export them, with values and files that do not convert.

One night on MovieLens-100K written as directories of part files, with hidden
files beside them, empty and broken shards, and values of the wrong type: every
bad value and file is a dead letter with its reason, nothing crashes, and the
night publishes the lists of everything else.
"""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import batch_recommend
from recsys_core.data import DataError
from recsys_core.serving import outputs
from tests.support import published

RUN_DATE = "2026-11-22"
BAD_USERS = ["941", "942", "943"]  # the users of the second users shard, each with one bad value


def _invalid_utf8(values: list[bytes]) -> pa.Array:
    """A string column holding bytes that are not UTF-8 (as a buggy exporter writes them)."""
    offsets = np.cumsum([0] + [len(v) for v in values]).astype(np.int32)
    return pa.Array.from_buffers(
        pa.string(), len(values), [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(values))]
    )


def _export(ml100k, root):
    """ML-100K as directories of part files, with the bad inputs of issue 21 planted."""
    ratings, users, items = ml100k.ratings, ml100k.users, ml100k.items
    interactions = root / "interactions"
    interactions.mkdir(parents=True)
    pq.write_table(ratings.slice(0, 60_000), interactions / "part-00000.parquet")
    # Ratings written as text and times with fractions of a second (pandas after a join): all convert but 5.
    rest = ratings.slice(60_000).to_pandas()
    rest["rating"] = rest["rating"].map(lambda r: f"{r:g}")
    rest["timestamp"] = rest["timestamp"] + 0.25
    planted = rest.iloc[:6].copy()
    planted["rating"] = ["four", "5 stars", "", "NaN", "4", "3"]
    planted["timestamp"] = [880_000_000.0] * 5 + [1e30]
    planted["item_id"] = ["1", "2", "3", "4", "5", "6"]
    planted["user_id"] = "1"
    pq.write_table(
        pa.Table.from_pandas(pd.concat([rest, planted], ignore_index=True), preserve_index=False),
        interactions / "part-00001.parquet",
    )
    # Times as ISO text: none converts.
    iso = pa.table(
        {
            "user_id": ["2", "2", "2"],
            "item_id": ["1", "2", "3"],
            "rating": pa.array([4.0, 4.0, 4.0], pa.float32()),
            "timestamp": ["2026-11-01T10:00:00", "yesterday", "8.8e8x"],
        }
    )
    pq.write_table(iso, interactions / "part-00002.parquet")
    (interactions / "part-00003.parquet").write_bytes(b"")  # an interrupted export
    pq.write_table(ratings.slice(0, 10).drop_columns(["rating"]), interactions / "part-00004.parquet")
    (interactions / "part-00005.parquet").write_bytes(b"PAR1 a half-copied file")
    (interactions / ".part-00000.parquet.crc").write_bytes(b"\x00crc")  # Hadoop's checksum: skipped
    (interactions / "_SUCCESS").write_bytes(b"")  # Spark's marker: skipped
    (interactions / "_committed_1234").write_text("{}")  # Databricks' commit file: skipped
    # Users: the last three in a second shard, with a category as text and an invalid UTF-8 zip code.
    (root / "users").mkdir()
    pq.write_table(users.slice(0, 940), root / "users" / "part-0.parquet")
    last = users.slice(940)
    last = last.set_column(
        last.schema.get_field_index("user_occupation_label"), "user_occupation_label", pa.array(["5", "eleven", "7"])
    )
    last = last.set_column(
        last.schema.get_field_index("user_gender"), "user_gender", pa.array(["true", "false", "maybe"])
    )
    zips = [z.encode() for z in last["user_zip_code"].to_pylist()]
    last = last.set_column(
        last.schema.get_field_index("user_zip_code"), "user_zip_code", _invalid_utf8([b"\xff\xfe1", *zips[1:]])
    )
    pq.write_table(last, root / "users" / "part-1.parquet")
    # Items: one more item whose genres are a plain string, which can never be a list: a refused file.
    (root / "items").mkdir()
    pq.write_table(items, root / "items" / "part-0.parquet")
    pq.write_table(
        pa.table({"item_id": ["9999"], "movie_title": ["X"], "movie_genres": ["Drama"]}),
        root / "items" / "part-1.parquet",
    )
    return root


@pytest.fixture(scope="module")
def export_run(ml100k, ml100k_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = _export(ml100k, root / "warehouse")
    output = root / "tables"
    args = ["--bundle", ml100k_bundle, "--output", str(output), "--run-date", RUN_DATE, "--reranker", "none"]
    manifest = batch_recommend.run(args + ["--data-source", "parquet", "--data-path", str(data)])
    return manifest, published(output, outputs.DEAD_LETTER), published(output, outputs.RECOMMENDATIONS), data


def _ratings_of(ml100k, users):
    return int(pa.compute.sum(pa.compute.is_in(ml100k.ratings["user_id"], value_set=pa.array(users))).as_py())


def test_every_bad_value_and_file_is_a_dead_letter_with_its_reason(export_run, ml100k):
    _, dead, _, _ = export_run
    reasons = dead.groupby(["table", "reason", "column"]).size().to_dict()
    assert reasons == {
        ("interactions", "not_convertible", "rating"): 3,  # "four", "5 stars", ""
        ("interactions", "nan", "rating"): 1,  # "NaN" reads as a number, which is not finite
        ("interactions", "not_convertible", "timestamp"): 4,  # 1e30 seconds and three texts
        ("interactions", "unreadable_file", ""): 3,  # empty, no rating column, not Parquet
        ("interactions", "unknown_user", "user_id"): _ratings_of(ml100k, BAD_USERS),
        ("users", "not_utf8", "user_zip_code"): 1,
        ("users", "not_convertible", "user_occupation_label"): 1,
        ("users", "not_convertible", "user_gender"): 1,
        ("items", "unreadable_file", ""): 1,
    }
    assert dead[dead["reason"] == "not_utf8"]["value"].tolist() == [r"b'\xff\xfe1'"]  # the bytes as written
    values = set(dead[dead["reason"] == "not_convertible"]["value"])
    assert {"four", "5 stars", "", "1e+30", "2026-11-01T10:00:00", "yesterday", "8.8e8x", "eleven", "maybe"} <= values
    files = dead[dead["reason"] == "unreadable_file"]
    assert sorted(f.rsplit("/", 1)[1] for f in files["source_file"]) == [
        "part-00003.parquet",
        "part-00004.parquet",
        "part-00005.parquet",
        "part-1.parquet",
    ]
    empty = files[files["source_file"].str.endswith("part-00003.parquet")]["value"].item()
    assert "empty (0 bytes)" in empty
    missing = files[files["source_file"].str.endswith("part-00004.parquet")]["value"].item()
    assert "no column 'rating'" in missing
    assert not dead["source_file"].str.contains(r"/[._][^/]*$").any()  # hidden files were never read


def test_rows_reconcile_with_the_footers_and_the_night_is_published(export_run, ml100k):
    manifest, dead, recs, _ = export_run
    rows = manifest["input_rows"]
    bad_interactions = 3 + 1 + 4 + _ratings_of(ml100k, BAD_USERS)
    # 100 000 ratings + 6 planted + 3 ISO rows + 10 in the shard without ratings (refused, counted as read).
    assert rows["interactions"] == {
        "read": 100_019,
        "used": 100_019 - bad_interactions - 10,
        "dead_lettered": bad_interactions + 10,
        "footer_rows": 100_019,
    }
    assert rows["users"] == {"read": 943, "used": 940, "dead_lettered": 3, "footer_rows": 943}
    assert rows["items"] == {"read": 1683, "used": 1682, "dead_lettered": 1, "footer_rows": 1683}
    # Fractions of a second were dropped, not the rows: every other user has their full history and a list.
    assert recs["user_id"].nunique() == 940 and not set(BAD_USERS) & set(recs["user_id"])
    lineage = manifest["data_lineage"]
    assert lineage["files"] == {"interactions": 3, "users": 2, "items": 1}
    assert [r["path"].rsplit("/", 1)[1] for r in lineage["refused_files"]] == [
        "part-00003.parquet",
        "part-00004.parquet",
        "part-00005.parquet",
        "part-1.parquet",
    ]


def test_a_table_without_a_usable_file_or_rows_is_refused_before_any_work(ml100k, ml100k_bundle, tmp_path):
    data = tmp_path / "warehouse"
    (data / "items").mkdir(parents=True)
    pq.write_table(ml100k.ratings, data / "interactions.parquet")
    (data / "items" / "part-0.parquet").write_bytes(b"")
    output = tmp_path / "out"
    args = ["--bundle", ml100k_bundle, "--output", str(output), "--data-source", "parquet", "--data-path", str(data)]
    with pytest.raises(
        DataError, match=r"no file of the items table .* can be read: .*part-0\.parquet: the file is empty"
    ):
        batch_recommend.run(args)
    pq.write_table(ml100k.items.slice(0, 0), data / "items" / "part-0.parquet")
    with pytest.raises(DataError, match=r"the items table .* has no rows: there is nothing to recommend"):
        batch_recommend.run(args)
    records = [json.loads(p.read_text()) for p in (output / "_runs").iterdir()]
    assert {r["status"] for r in records} == {"failed"} and not (output / "_published").exists()
