"""MovieLens as one schema among others: its label sets, as TFDS `movielens/*-ratings` names them.

The GroupLens, TFDS and MovieLens-shaped synthetic readers all produce tables of
`schemas/movielens.json`, with genres and occupations spelled as TFDS spells them,
so that ids from every source mean the same thing.
"""

from __future__ import annotations

import functools

import numpy as np

from recsys_core.schema import FeatureSchema, load_schema

GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "Unknown", "War", "Western", "(no genres listed)",
)  # fmt: skip
OCCUPATIONS = (
    "academic/educator", "artist", "clerical/admin", "customer service", "doctor/health care",
    "entertainment", "executive/managerial", "farmer", "homemaker", "lawyer", "librarian",
    "other/not specified", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "student", "technician/engineer", "tradesman/craftsman", "unemployed",
    "writer",
)  # fmt: skip
AGE_BUCKETS = (1, 18, 25, 35, 45, 50, 56)


@functools.cache
def movielens_schema() -> FeatureSchema:
    """`schemas/movielens.json`: the TFDS feature names."""
    return load_schema("movielens")


def bucketize_age(age: np.ndarray) -> np.ndarray:
    """MovieLens-1M age buckets (1, 18, 25, ... 56) of raw ages, as TFDS does for 100K; int64."""
    buckets = np.asarray(AGE_BUCKETS, dtype=np.int64)
    positions = np.searchsorted(buckets, np.asarray(age, dtype=np.float32), side="right") - 1
    return buckets[np.clip(positions, 0, None)]
