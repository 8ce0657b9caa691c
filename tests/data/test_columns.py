"""One reader of input columns: training and the job read the same file alike, and differ only in what they do
with a value that does not convert (training refuses it, the job dead-letters its row)."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys_core.data.columns import is_hidden
from recsys_core.data.parquet_source import read_parquet_tables
from recsys_core.data.tables import DataError
from recsys_core.schema import load_schema
from recsys_core.serving.validation import Rules, check_rows

IDS = load_schema("ids")


def _interactions(ratings: list[str]) -> pa.Table:
    """Two interactions as an exporter might write them: ids as binary, ratings as text, times in milliseconds."""
    return pa.table(
        {
            "user_id": pa.array([b"u1", b"u2"], pa.binary()),
            "item_id": ["x", "y"],
            "rating": ratings,
            "timestamp": pa.array([1_500_999, 2_000_250], pa.timestamp("ms")),
        }
    )


def test_training_and_the_job_read_the_same_file_to_the_same_rows(tmp_path):
    pq.write_table(_interactions(["4", "2.5"]), tmp_path / "interactions.parquet")
    training = read_parquet_tables(str(tmp_path), IDS).ratings
    job, dead = check_rows(_interactions(["4", "2.5"]), "interactions", Rules(IDS, 10**10), "f.parquet")
    expected = {"user_id": ["u1", "u2"], "item_id": ["x", "y"], "rating": [4.0, 2.5], "timestamp": [1_500, 2_000]}
    assert training.to_pydict() == expected
    assert job.to_pydict() == expected and dead.num_rows == 0


def test_a_value_that_does_not_convert_is_refused_by_training_and_dead_lettered_by_the_job(tmp_path):
    pq.write_table(_interactions(["4", "four"]), tmp_path / "interactions.parquet")
    with pytest.raises(DataError, match=r"interactions.*\.rating in row 1 is 'four'.*float.*ids\.json"):
        read_parquet_tables(str(tmp_path), IDS)
    job, dead = check_rows(_interactions(["4", "four"]), "interactions", Rules(IDS, 10**10), "f.parquet")
    assert job["user_id"].to_pylist() == ["u1"]
    assert dead.select(["reason", "column", "value"]).to_pylist() == [
        {"reason": "not_convertible", "column": "rating", "value": "four"}
    ]


def test_files_spark_hive_and_beam_leave_out_are_hidden():
    assert is_hidden("gs://b/t/_SUCCESS") and is_hidden("/t/.part-0.parquet.crc") and is_hidden("/t/_tmp/")
    assert not is_hidden("/t/part-0.parquet") and not is_hidden("/_t/part-0.parquet")
