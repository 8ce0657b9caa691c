"""Splits streamed from sharded Parquet files (`streaming.prepare`) against the same splits in memory."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from recsys_core.config import DataConfig
from recsys_core.data import streaming
from recsys_core.data.parquet_source import open_parquet_tables, read_parquet_tables
from recsys_core.data.pipeline import make_dataset
from recsys_core.data.prepared import from_parts
from recsys_core.data.streaming import FIT, TEST, VALIDATION, RowSplit
from recsys_core.data.tables import DataError, joined
from recsys_core.features.vocabulary import fit_vocabulary
from recsys_core.schema import load_schema
from tests.support import run_measured

SHARD_ROWS = 25_000
LENGTH = 20


@pytest.fixture(scope="module")
def ml100k_parquet(ml100k, tmp_path_factory) -> str:
    """MovieLens-100K as Parquet tables, the interactions in four files of several row groups each."""
    root = tmp_path_factory.mktemp("ml100k-parquet")
    os.makedirs(root / "interactions")
    for shard, start in enumerate(range(0, ml100k.ratings.num_rows, SHARD_ROWS)):
        part = ml100k.ratings.slice(start, SHARD_ROWS)
        pq.write_table(part, root / "interactions" / f"part-{shard:05d}.parquet", row_group_size=7_000)
    (root / "interactions" / "_SUCCESS").write_text("")
    pq.write_table(ml100k.users, root / "users.parquet")
    pq.write_table(ml100k.items, root / "items.parquet")
    return str(root)


def _prepare(root: str, directory, **settings):
    tables = open_parquet_tables(root, load_schema("movielens"))
    config = DataConfig(source="parquet", path=root, out_of_core=True, **settings)
    return streaming.prepare(tables, config, LENGTH, str(directory), seed=3), config


def _in_memory_splits(root: str, config: DataConfig):
    """The streamed split's rows, split in memory: every rating read whole, labelled by the same rule."""
    whole = read_parquet_tables(root, load_schema("movielens"))
    labels = RowSplit.of(open_parquet_tables(root, whole.schema), config).labels(whole.ratings, 0)
    return [whole.with_ratings(whole.ratings.filter(pa.array(labels == label))) for label in (FIT, VALIDATION, TEST)]


def _rows(files, histories) -> dict[str, np.ndarray]:
    """Every example of `files`, sorted by user, item and time."""
    batches = list(make_dataset(files, histories, 4096, None, repeat=False).as_numpy_iterator())
    columns = {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]}
    order = np.lexsort((columns["timestamp"], columns["item_id"], columns["user_id"]))
    return {name: values[order] for name, values in columns.items()}


def test_streamed_phases_are_the_in_memory_ones_of_the_same_split(ml100k_parquet, tmp_path):
    """Vocabularies, histories, example files and the protocol's tables, batch by batch over four files,
    equal what the in-memory path makes of the same rows read whole."""
    splits, config = _prepare(ml100k_parquet, tmp_path / "streamed")
    fit, validation, test = _in_memory_splits(ml100k_parquet, config)
    train = joined([fit, validation])
    assert splits.rows == {
        "fit": fit.ratings.num_rows,
        "validation": validation.ratings.num_rows,
        "test": test.ratings.num_rows,
    }
    assert splits.sample is None and splits.lineage["num_ratings"] == 100_000
    for name, split in (("fit", fit), ("validation", validation), ("train", train), ("test", test)):
        assert splits.protocol[name].ratings.sort_by("user_id").equals(split.ratings.sort_by("user_id")), name
    in_memory = from_parts(fit, validation, test, LENGTH, str(tmp_path / "in-memory"), 3)
    for phase, seen in (("fit", fit), ("train", train)):
        expected = in_memory.phase(phase).inputs
        streamed = splits.phase(phase)
        vocabulary, reference = streamed.vocabulary, fit_vocabulary(seen)
        assert (vocabulary.user_ids, vocabulary.item_ids) == (reference.user_ids, reference.item_ids)
        assert vocabulary.categories == reference.categories
        assert vocabulary.rating_mean == pytest.approx(reference.rating_mean, rel=1e-12)
        for name, stats in reference.numbers.items():  # every value is in the sample: the same quantiles
            got = vocabulary.numbers[name]
            assert (got.boundaries, got.low, got.high) == (stats.boundaries, stats.low, stats.high), name
            assert (got.mean, got.std) == pytest.approx((stats.mean, stats.std), rel=1e-9), name
        inputs = streamed.inputs
        np.testing.assert_array_equal(inputs.histories, expected.histories)
        np.testing.assert_array_equal(inputs.test_histories, expected.test_histories)
        pairs = [(inputs.train, expected.train, inputs.histories), (inputs.test, expected.test, inputs.test_histories)]
        if phase == "fit":
            pairs.append((inputs.validation, expected.validation, inputs.histories))
        else:
            assert inputs.validation is None
        for got, want, histories in pairs:
            assert got.rows == want.rows
            got, want = _rows(got, histories), _rows(want, histories)
            assert set(got) == set(want)
            for name in got:
                if got[name].dtype.kind == "f":
                    np.testing.assert_allclose(got[name], want[name], rtol=1e-6, err_msg=name)
                else:
                    np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_row_splits_meet_their_shares_reproducibly_and_temporal_ones_keep_time_order(ml100k_parquet):
    tables = open_parquet_tables(ml100k_parquet, load_schema("movielens"))
    ratings = read_parquet_tables(ml100k_parquet, tables.schema).ratings
    config = DataConfig(source="parquet", test_fraction=0.2, validation_fraction=0.1, seed=42)
    labels = RowSplit.of(tables, config).labels(ratings, 0)
    shares = np.bincount(labels, minlength=3) / len(labels)
    np.testing.assert_allclose(shares, [0.72, 0.08, 0.2], atol=0.005)  # 3 standard errors at 100 000 rows
    in_parts = np.concatenate([RowSplit(config).labels(ratings.slice(s, 999), s) for s in range(0, 100_000, 999)])
    np.testing.assert_array_equal(in_parts, labels)  # a row's split does not depend on the batches
    other = RowSplit(DataConfig(source="parquet", seed=7)).labels(ratings, 0)
    assert 0.3 < (other != labels).mean() < 0.5

    temporal = DataConfig(source="parquet", split="temporal", validation_fraction=0.1)
    labels = RowSplit.of(tables, temporal).labels(ratings, 0)
    times = ratings["timestamp"].to_numpy()
    fit, validation, test = (times[labels == label] for label in (FIT, VALIDATION, TEST))
    assert fit.max() < validation.min() and validation.max() < test.min()
    shares = np.bincount(labels, minlength=3) / len(labels)
    np.testing.assert_allclose(shares, [0.72, 0.08, 0.2], atol=0.002)  # every timestamp is sampled here


def test_the_protocol_scores_every_rating_of_a_sample_of_users(ml100k_parquet, tmp_path):
    splits, _ = _prepare(ml100k_parquet, tmp_path, protocol_ratings=20_000)
    sample = splits.sample
    assert 15_000 < sample["ratings"] <= 20_000 and sample["of_ratings"] == 100_000
    assert sample["of_users"] == 943 and 0 < sample["users"] < 943
    tables = [splits.protocol[name].ratings for name in ("fit", "validation", "test")]
    sampled = pa.concat_tables(tables)
    assert sampled.num_rows == sample["ratings"]
    assert len(pc.unique(sampled["user_id"])) == sample["users"]
    whole = read_parquet_tables(ml100k_parquet, load_schema("movielens")).ratings
    of_sampled = whole.filter(pc.is_in(whole["user_id"], value_set=pc.unique(sampled["user_id"])))
    assert of_sampled.num_rows == sampled.num_rows  # whole users, none of their ratings left out
    assert splits.protocol["train"].ratings.num_rows == tables[0].num_rows + tables[1].num_rows
    assert splits.rows["fit"] + splits.rows["validation"] + splits.rows["test"] == 100_000  # models get all


def test_bad_rows_are_named_by_their_place_in_the_file_set(ml100k, tmp_path):
    schema = load_schema("movielens")
    os.makedirs(tmp_path / "interactions")
    pq.write_table(ml100k.users, tmp_path / "users.parquet")
    pq.write_table(ml100k.items, tmp_path / "items.parquet")
    first, second = ml100k.ratings.slice(0, 1_000), ml100k.ratings.slice(1_000, 1_000)
    pq.write_table(first, tmp_path / "interactions" / "a.parquet")
    users = second["user_id"].to_pylist()
    users[3] = None
    bad = second.set_column(0, "user_id", pa.array(users, pa.string()))
    pq.write_table(bad, tmp_path / "interactions" / "b.parquet")
    config = DataConfig(source="parquet", path=str(tmp_path), out_of_core=True)
    tables = open_parquet_tables(str(tmp_path), schema)
    with pytest.raises(DataError, match=r"user_id is null in row 1003 "):
        streaming.prepare(tables, config, LENGTH, str(tmp_path / "x"), seed=0)
    users[3] = "ghost"
    pq.write_table(second.set_column(0, "user_id", pa.array(users)), tmp_path / "interactions" / "b.parquet")
    with pytest.raises(DataError, match=r"'ghost'.* not in the users table"):
        streaming.prepare(tables, config, LENGTH, str(tmp_path / "x"), seed=0)
    pq.write_table(second.drop_columns(["timestamp"]), tmp_path / "interactions" / "b.parquet")
    pq.write_table(first.drop_columns(["timestamp"]), tmp_path / "interactions" / "a.parquet")
    temporal = DataConfig(source="parquet", path=str(tmp_path), out_of_core=True, split="temporal")
    with pytest.raises(DataError, match="temporal split needs timestamps that vary"):
        streaming.prepare(open_parquet_tables(str(tmp_path), schema), temporal, LENGTH, str(tmp_path / "x"), 0)
    assert not (tmp_path / "x").exists()  # refused before anything was written


_WRITE = """
import sys
from recsys_core.data.synthetic import write_synthetic_parquet

root, users, per_user = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# Files of 60 000 ratings, however many there are.
counts = write_synthetic_parquet(root, users, 2_000, per_user, seed=1, chunk_users=60_000 // per_user)
print(counts["interactions"])
"""
_PEAK = """
import sys, tempfile
from recsys_core.config import DataConfig
from recsys_core.data import streaming
from recsys_core.data.parquet_source import open_parquet_tables, read_parquet_tables
from recsys_core.schema import load_schema
import tensorflow as tf

root, scratch, how = sys.argv[1:4]
tf.constant(1)
tables = open_parquet_tables(root, load_schema("ids"))
reset_peak()
before = peak_bytes()
if how == "streamed":
    config = DataConfig(source="parquet", path=root, out_of_core=True, protocol_ratings=50_000)
    splits = streaming.prepare(tables, config, 10, tempfile.mkdtemp(dir=scratch), 0)
    total = sum(splits.rows.values())
    splits.phase("fit"), splits.phase("train")
else:
    total = read_parquet_tables(root, tables.schema).ratings.num_rows
print(total, peak_bytes() - before)
"""


def test_streaming_ten_times_the_interactions_takes_no_more_memory(tmp_path):
    """300 000 and 3 000 000 ratings (5 000 and 15 000 users) in files of 60 000: preparing every split
    grows the process's peak by about the same 90 MB (reader, writers, samples; 5-10 MB more at 10x),
    where reading the ratings whole grows it by 35-40 MB and by 127-137 MB."""
    growth = {}
    for users, per_user in ((5_000, 60), (15_000, 200)):
        root = str(tmp_path / str(users))
        (written,) = run_measured(_WRITE, root, users, per_user)  # in its own process: its heap is not reused
        for how in ("streamed", "whole"):
            ratings, growth[how, users] = run_measured(_PEAK, root, tmp_path, how)
            assert ratings == written
    assert growth["whole", 15_000] - growth["whole", 5_000] > 60 * 2**20, growth  # the bound can fail
    assert growth["streamed", 15_000] - growth["streamed", 5_000] < 24 * 2**20, growth
