import numpy as np
import pandas as pd
import pytest

from recsys_core.data.splits import random_split, temporal_split
from tests.support import SPLITS, run_measured


@pytest.mark.parametrize("part", ["train", "test"])
def test_random_split_is_the_tfrs_tutorial_split(ml100k_split, part):
    split = ml100k_split[0] if part == "train" else ml100k_split[1]
    expected = pd.read_csv(f"{SPLITS}/tfrs-seed42-{part}.tsv", sep="\t", dtype={"user_id": str, "movie_id": str})
    ours = split.ratings.to_pandas()
    assert len(ours) == len(expected) == (80_000 if part == "train" else 20_000)
    for column, theirs in (
        ("user_id", "user_id"),
        ("item_id", "movie_id"),
        ("rating", "user_rating"),
        ("timestamp",) * 2,
    ):
        np.testing.assert_array_equal(ours[column].to_numpy(), expected[theirs].to_numpy())


def test_random_split_is_reproducible_and_seeded(ml100k):
    a_train, _ = random_split(ml100k, 0.2, 7)
    b_train, _ = random_split(ml100k, 0.2, 7)
    c_train, _ = random_split(ml100k, 0.2, 8)
    assert a_train.ratings.equals(b_train.ratings)
    assert not a_train.ratings.equals(c_train.ratings)


def test_splits_partition_the_ratings(ml100k, ml100k_split):
    train, test = ml100k_split
    keys = lambda t: set(zip(t["user_id"].to_pylist(), t["item_id"].to_pylist(), strict=True))  # noqa: E731
    assert keys(train.ratings).isdisjoint(keys(test.ratings))
    assert keys(train.ratings) | keys(test.ratings) == keys(ml100k.ratings)


def test_temporal_split_puts_the_latest_ratings_in_test(ml100k):
    train, test = temporal_split(ml100k, 0.25)
    assert (train.ratings.num_rows, test.ratings.num_rows) == (75_000, 25_000)
    assert train.ratings["timestamp"].to_numpy().max() <= test.ratings["timestamp"].to_numpy().min()


_LARGE_SPLIT = """
import numpy as np, pyarrow as pa, pyarrow.compute as pc
import recsys_core
from recsys_core.data.splits import random_split
from recsys_core.data.tables import InteractionData
from recsys_core.schema import load_schema
rows, rng = 3_000_000, np.random.default_rng(0)
users, items = pa.array([f"u{i}" for i in range(5000)]), pa.array([f"i{i}" for i in range(2000)])
ratings = pa.table({
    "user_id": pc.take(users, rng.integers(0, 5000, rows)), "item_id": pc.take(items, rng.integers(0, 2000, rows)),
    "rating": pa.array(np.ones(rows, np.float32)), "timestamp": pa.array(np.arange(rows, dtype=np.int64)),
})
data = InteractionData(ratings, pa.table({"user_id": users}), pa.table({"item_id": items}), load_schema("ids"), {})
reset_peak()
before = peak_bytes()
train, test = random_split(data, 0.2, 7)
grown = peak_bytes() - before
again, _ = random_split(data, 0.2, 7)
times = np.sort(np.concatenate([train.ratings["timestamp"].to_numpy(), test.ratings["timestamp"].to_numpy()]))
print(train.ratings.num_rows, test.ratings.num_rows, int(again.ratings.equals(train.ratings)),
      int((times == np.arange(rows)).all()), grown)
"""


def test_a_random_split_of_millions_of_ratings_costs_little_memory():
    """3M ratings: the split partitions them, 80/20, reproducibly, and its peak memory is that of the split
    tables (the tutorials' `tf.data` shuffle, kept for up to 2M ratings, would hold ~700 MB of buffer)."""
    train, test, reproducible, partition, grown = run_measured(_LARGE_SPLIT)
    assert (train, test, reproducible, partition) == (2_400_000, 600_000, 1, 1)
    assert grown < 250 * 2**20, grown
