import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys_core.config import DataConfig
from recsys_core.data import load_data
from recsys_core.data.parquet_source import read_parquet_tables
from recsys_core.data.synthetic import synthetic_interactions
from recsys_core.data.tables import GENRES, OCCUPATIONS, RATINGS_SCHEMA, DataError


def _write_warehouse_tables(root):
    interactions = pa.table(
        {
            "user_id": ["a", "a", "b"],
            "item_id": ["x", "y", "x"],
            "rating": [5, 3, 4],
            "timestamp": pa.array([1_000, 2_000, 3_000], type=pa.timestamp("s")),
        }
    )
    users = pa.table(
        {"user_id": ["a", "b"], "gender": ["F", "M"], "age": [33, 61], "occupation": ["writer", "astronaut"]}
    )
    items = pa.table(
        {"item_id": ["x", "y"], "title": ["X (2001)", "Y (2002)"], "genres": [["Drama"], ["Comedy", "War"]]}
    )
    (root / "interactions").mkdir()
    pq.write_table(interactions, root / "interactions" / "part-0.parquet")
    pq.write_table(users, root / "users.parquet")
    pq.write_table(items, root / "items.parquet")


def test_parquet_tables_map_onto_the_canonical_example(tmp_path):
    _write_warehouse_tables(tmp_path)
    data = read_parquet_tables(str(tmp_path))
    assert data.ratings.schema.equals(RATINGS_SCHEMA)
    rows = {(e["user_id"], e["movie_id"]): e for e in data.examples.to_pylist()}
    assert rows[("a", "y")]["user_rating"] == 3.0 and rows[("a", "y")]["timestamp"] == 2_000
    assert [GENRES[g] for g in rows[("a", "y")]["movie_genres"]] == ["Comedy", "War"]
    assert rows[("b", "x")]["user_gender"] and rows[("b", "x")]["bucketized_user_age"] == 56.0
    # An occupation outside the TFDS labels keeps its text and gets the "other" label.
    assert rows[("b", "x")]["user_occupation_text"] == "astronaut"
    assert OCCUPATIONS[rows[("b", "x")]["user_occupation_label"]] == "other/not specified"
    assert data.lineage["implicit"] is False


def test_parquet_users_and_items_are_optional(tmp_path):
    pq.write_table(pa.table({"user_id": ["a", "b"], "item_id": ["x", "x"]}), tmp_path / "interactions.parquet")
    data = read_parquet_tables(str(tmp_path))
    assert data.lineage["implicit"] is True
    assert data.items.to_pylist() == [{"movie_id": "x", "movie_title": "x", "movie_genres": []}]
    assert sorted(data.users["user_id"].to_pylist()) == ["a", "b"]


def test_parquet_errors_name_the_table_and_column(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_parquet_tables(str(tmp_path / "missing"))
    with pytest.raises(DataError, match="no interactions table"):
        read_parquet_tables(str(tmp_path))
    pq.write_table(pa.table({"user": ["a"], "item_id": ["x"]}), tmp_path / "interactions.parquet")
    with pytest.raises(DataError, match="interactions table has no user_id column"):
        read_parquet_tables(str(tmp_path))
    (tmp_path / "interactions.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"cannot read Parquet table .*interactions\.parquet"):
        read_parquet_tables(str(tmp_path))


def test_synthetic_data_is_seeded_and_has_planted_structure():
    a = synthetic_interactions(500, 200, 20, seed=1)
    b = synthetic_interactions(500, 200, 20, seed=1)
    c = synthetic_interactions(500, 200, 20, seed=2)
    assert a.ratings.equals(b.ratings) and not a.ratings.equals(c.ratings)
    assert a.lineage["source"] == "synthetic"
    counts = np.sort(np.unique(a.ratings["movie_id"].to_numpy(zero_copy_only=False), return_counts=True)[1])[::-1]
    assert counts[:20].sum() > 3 * counts[-20:].sum()  # popularity skew
    # Gender shifts taste: the two groups' favourite items differ more than chance.
    examples = a.examples.to_pandas()
    by_gender = examples.groupby(["user_gender", "movie_id"]).size().unstack(0).fillna(0)
    correlation = np.corrcoef(by_gender[True], by_gender[False])[0, 1]
    assert correlation < 0.95


def test_tfds_source_reads_mocked_movielens():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=50):
        data = load_data(DataConfig(source="tfds", tfds_name="movielens/100k-ratings"))
    assert data.ratings.num_rows == 50
    assert set(data.ratings["user_id"].to_pylist()) == set(data.users["user_id"].to_pylist())
    assert data.examples.num_rows == 50


def test_tfds_source_rejects_non_rating_configs():
    with pytest.raises(DataError, match="not a MovieLens ratings config"):
        load_data(DataConfig(source="tfds", tfds_name="mnist"))
