import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys_core.config import DataConfig
from recsys_core.data import load_data
from recsys_core.data.movielens import movielens_schema
from recsys_core.data.parquet_source import read_parquet_tables
from recsys_core.data.shop import synthetic_shop
from recsys_core.data.synthetic import synthetic_interactions
from recsys_core.data.tables import RATINGS_SCHEMA, DataError
from recsys_core.schema import FeatureSchema, SchemaError, load_schema

SHOP_SCHEMA = {
    "name": "my-shop",
    "features": [
        {"name": "country", "entity": "user", "kind": "categorical"},
        {"name": "signup", "entity": "user", "kind": "timestamp"},
        {"name": "category", "entity": "item", "kind": "categorical"},
        {"name": "price", "entity": "item", "kind": "numeric", "log": True},
        {"name": "tags", "entity": "item", "kind": "multi_categorical", "default": []},
    ],
}


def _write_shop_tables(root, items=None):
    interactions = pa.table(
        {
            "user_id": ["a", "a", "b"],
            "item_id": ["x", "y", "x"],
            "rating": [5, 3, 4],
            "timestamp": pa.array([1_000, 2_000, 3_000], type=pa.timestamp("s")),
            "session": ["s1", "s1", "s2"],  # not in the schema: ignored
        }
    )
    users = pa.table(
        {
            "user_id": ["a", "b"],
            "country": ["DE", "FR"],
            "signup": pa.array([500_000, 0], type=pa.timestamp("ms")),
        }
    )
    items = items or pa.table(
        {"item_id": ["x", "y"], "category": ["Electronics", "Garden"], "price": [19.99, 5], "tags": [["eco"], None]}
    )
    (root / "interactions").mkdir()
    pq.write_table(interactions, root / "interactions" / "part-0.parquet")
    pq.write_table(users, root / "users.parquet")
    pq.write_table(items, root / "items.parquet")
    schema_path = root / "my-shop.json"
    schema_path.write_text(json.dumps(SHOP_SCHEMA))
    return str(schema_path)


def test_parquet_tables_are_read_as_their_schema_declares(tmp_path):
    schema = load_schema(_write_shop_tables(tmp_path))
    data = read_parquet_tables(str(tmp_path), schema)
    assert data.ratings.schema.equals(RATINGS_SCHEMA)
    assert data.users.column_names == ["user_id", "country", "signup"]
    rows = {(e["user_id"], e["item_id"]): e for e in data.examples.to_pylist()}
    assert rows[("a", "y")]["rating"] == 3.0 and rows[("a", "y")]["timestamp"] == 2_000
    # Any category is a value like another (no fixed label list); a null list takes the default [].
    assert rows[("b", "x")]["category"] == "Electronics" and rows[("a", "y")]["tags"] == []
    assert rows[("a", "x")]["price"] == pytest.approx(19.99) and rows[("a", "x")]["signup"] == 500
    assert data.lineage["implicit"] is False


def test_a_column_the_schema_declares_but_the_table_lacks_is_refused_naming_both(tmp_path):
    schema_path = _write_shop_tables(tmp_path, items=pa.table({"item_id": ["x", "y"], "price": [1.0, 2.0]}))
    with pytest.raises(DataError, match=r"items table has no column 'category'.*my-shop\.json"):
        read_parquet_tables(str(tmp_path), load_schema(schema_path))


def test_a_column_of_the_wrong_type_or_with_nulls_is_refused(tmp_path):
    items = pa.table({"item_id": ["x", "y"], "category": ["a", "b"], "price": ["cheap", "dear"], "tags": [[], []]})
    schema_path = _write_shop_tables(tmp_path, items=items)
    with pytest.raises(DataError, match=r"items\.price in row 0 is 'cheap'.*float.*my-shop\.json"):
        read_parquet_tables(str(tmp_path), load_schema(schema_path))
    pq.write_table(
        pa.table({"item_id": ["x", "y"], "category": ["a", None], "price": [1.0, 2.0]}), tmp_path / "items.parquet"
    )
    with pytest.raises(DataError, match=r"items\.category is null in row 1.*default in .*my-shop\.json"):
        read_parquet_tables(str(tmp_path), load_schema(schema_path))


def test_ids_only_tables_need_no_users_or_items_and_may_be_implicit(tmp_path):
    pq.write_table(pa.table({"user_id": ["a", "b"], "item_id": ["x", "x"]}), tmp_path / "interactions.parquet")
    data = read_parquet_tables(str(tmp_path), load_schema("implicit"))
    assert data.lineage["implicit"] is True and data.ratings["rating"].to_pylist() == [1.0, 1.0]
    assert data.items.to_pylist() == [{"item_id": "x"}]
    assert sorted(data.users["user_id"].to_pylist()) == ["a", "b"]
    with pytest.raises(DataError, match=r"no 'rating' column.*ids\.json.*--schema implicit"):
        load_data(DataConfig(source="parquet", path=str(tmp_path)))


def test_parquet_errors_name_the_table_and_column(tmp_path):
    ids = load_schema("ids")
    with pytest.raises(DataError, match="does not exist"):
        read_parquet_tables(str(tmp_path / "missing"), ids)
    with pytest.raises(DataError, match="no interactions table"):
        read_parquet_tables(str(tmp_path), ids)
    pq.write_table(pa.table({"user": ["a"], "item_id": ["x"], "rating": [1.0]}), tmp_path / "interactions.parquet")
    with pytest.raises(DataError, match="interactions table has no column 'user_id'"):
        read_parquet_tables(str(tmp_path), ids)
    (tmp_path / "interactions.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"cannot read Parquet table .*interactions\.parquet"):
        read_parquet_tables(str(tmp_path), ids)


def test_schema_files_are_checked_and_round_trip(tmp_path):
    schema = movielens_schema()
    assert FeatureSchema.from_dict(schema.to_dict()) == FeatureSchema.from_dict(schema.to_dict(), "")
    assert schema.get("movie_genres").kind == "multi_categorical"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"features": [{"name": "size", "entity": "item", "kind": "colour"}]}))
    with pytest.raises(SchemaError, match=r"bad\.json.*kind 'colour' is not one of"):
        load_schema(str(bad))
    bad.write_text(json.dumps({"features": [{"name": "item_id", "entity": "item", "kind": "categorical"}]}))
    with pytest.raises(SchemaError, match="reserved"):
        load_schema(str(bad))
    with pytest.raises(SchemaError, match="no built-in schema 'films'"):
        load_schema("films")


def test_movielens_data_conforms_to_a_narrower_schema_and_refuses_a_wider_one(tiny_data, tmp_path):
    narrow = FeatureSchema("narrow", (movielens_schema().get("movie_genres"),))
    assert tiny_data.conform(narrow).items.column_names == ["item_id", "movie_genres"]
    wide = tmp_path / "wide.json"
    wide.write_text(json.dumps({"features": [{"name": "brand", "entity": "item", "kind": "categorical"}]}))
    with pytest.raises(SchemaError, match=r"items table column 'brand'.*wide\.json"):
        tiny_data.conform(load_schema(str(wide)))


def test_the_shop_is_seeded_and_its_planted_effects_show():
    a = synthetic_shop(1500, 400, 20, seed=1)
    assert a.ratings.equals(synthetic_shop(1500, 400, 20, seed=1).ratings)
    assert not a.ratings.equals(synthetic_shop(1500, 400, 20, seed=2).ratings)
    examples = a.examples.to_pandas()
    # Country shifts what is bought: category shares differ between countries more than sampling noise.
    shares = examples.groupby(["country", "category"]).size().unstack(fill_value=0)
    shares = shares.div(shares.sum(axis=1), axis=0)
    assert (shares.max() - shares.min()).max() > 0.1
    # Brand quality shows in the ratings: brand means spread well beyond the noise of their mean.
    brand_means = examples.groupby("brand")["rating"].mean()
    assert brand_means.max() - brand_means.min() > 1.0
    # Users buy after they sign up.
    assert (examples["timestamp"] >= examples["signup_time"]).all()


def test_synthetic_data_is_seeded_and_has_planted_structure():
    a = synthetic_interactions(500, 200, 20, seed=1)
    b = synthetic_interactions(500, 200, 20, seed=1)
    c = synthetic_interactions(500, 200, 20, seed=2)
    assert a.ratings.equals(b.ratings) and not a.ratings.equals(c.ratings)
    assert a.lineage["source"] == "synthetic"
    counts = np.sort(np.unique(a.ratings["item_id"].to_numpy(zero_copy_only=False), return_counts=True)[1])[::-1]
    assert counts[:20].sum() > 3 * counts[-20:].sum()  # popularity skew
    # Gender shifts taste: the two groups' favourite items differ more than chance.
    examples = a.examples.to_pandas()
    by_gender = examples.groupby(["user_gender", "item_id"]).size().unstack(0).fillna(0)
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


def test_synthetic_tables_of_any_size_are_written_in_chunks(tmp_path):
    from recsys_core.data.synthetic import write_synthetic_parquet

    counts = write_synthetic_parquet(str(tmp_path / "a"), 250, 120, 10, seed=3, chunk_users=100)
    assert sorted(p.name for p in (tmp_path / "a" / "users").iterdir()) == [f"part-0000{i}.parquet" for i in range(3)]
    data = read_parquet_tables(str(tmp_path / "a"), movielens_schema())
    assert (data.users.num_rows, data.items.num_rows, data.ratings.num_rows) == (250, 120, counts["interactions"])
    assert data.users["user_id"].to_pylist() == [f"u{u}" for u in range(250)]
    write_synthetic_parquet(str(tmp_path / "b"), 250, 120, 10, seed=3, chunk_users=100)
    again = read_parquet_tables(str(tmp_path / "b"), movielens_schema())
    assert again.ratings.equals(data.ratings) and again.items.equals(data.items)


def test_candidate_sampling_draws_from_the_same_distribution_as_the_exact_generator(tmp_path):
    """The fast path for large catalogues (popularity draws, then a Gumbel top-n of taste) matches the exact one."""
    from recsys_core.data.synthetic import write_synthetic_parquet

    tables = {}
    for name, candidates in (("exact", 0), ("sampled", 100)):
        write_synthetic_parquet(str(tmp_path / name), 3000, 400, 10, seed=5, candidates=candidates)
        tables[name] = read_parquet_tables(str(tmp_path / name), movielens_schema()).examples.to_pandas()
    exact, sampled = tables["exact"], tables["sampled"]
    assert not sampled.duplicated(["user_id", "item_id"]).any()
    assert (sampled.groupby("user_id").size() >= 5).all()
    per_item = {
        name: t.groupby("item_id").size().reindex([f"i{i}" for i in range(400)]).fillna(0) for name, t in tables.items()
    }
    assert np.corrcoef(per_item["exact"], per_item["sampled"])[0, 1] > 0.97  # the same popularity
    # The same taste: per (gender, item) shares agree between the two generators.
    shares = {
        name: t.groupby(["user_gender", "item_id"])
        .size()
        .unstack(0)
        .fillna(0)
        .reindex([f"i{i}" for i in range(400)])
        .fillna(0)
        for name, t in tables.items()
    }
    lift = {name: (s[True] / s[True].sum()) - (s[False] / s[False].sum()) for name, s in shares.items()}
    assert np.corrcoef(lift["exact"], lift["sampled"])[0, 1] > 0.5
    assert abs(exact["rating"].mean() - sampled["rating"].mean()) < 0.1
