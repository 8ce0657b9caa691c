import numpy as np
import pandas as pd
import pytest
from conftest import SPLITS

from recsys_core.data.splits import random_split, temporal_split


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
