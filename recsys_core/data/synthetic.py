"""Seeded synthetic interactions with planted structure, at any scale.

Users and items get latent factors; a user's factor is partly determined by
gender and age, an item's by its genres; item popularity follows a Zipf-like
skew. Each user picks items by a Gumbel top-n over `factor affinity +
log popularity`, and rates them by affinity, so a good model can recover the
structure from ids, demographics and genres. Synthetic data is labelled as such
in the lineage and is never used in place of a real source.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from recsys_core.data.tables import (
    AGE_BUCKETS,
    ITEMS_SCHEMA,
    OCCUPATIONS,
    RATINGS_SCHEMA,
    USERS_SCHEMA,
    InteractionData,
    bucketize_age,
)

_NUM_GENRES = 19  # the real MovieLens genres; "IMAX" and "(no genres listed)" stay unused
_FACTORS = 8
_START_TIME = 1_700_000_000


def synthetic_interactions(num_users: int, num_items: int, interactions_per_user: int, seed: int) -> InteractionData:
    """Generates users, items and ratings.

    Args:
        num_users: number of users, each with at least 5 interactions.
        num_items: number of items; must exceed `interactions_per_user`.
        interactions_per_user: mean interactions per user (Poisson).
        seed: makes the result reproducible.
    """
    if num_items <= interactions_per_user or min(num_users, num_items, interactions_per_user) < 1:
        raise ValueError(
            f"need num_users, num_items, interactions_per_user >= 1 and num_items > interactions_per_user, "
            f"got {num_users}, {num_items}, {interactions_per_user}"
        )
    rng = np.random.default_rng(seed)
    gender = rng.random(num_users) < 0.7
    age = rng.integers(AGE_BUCKETS[1] - 5, 70, num_users).astype(np.float32)
    bucket = bucketize_age(age)
    occupation = rng.integers(0, len(OCCUPATIONS), num_users)
    gender_effect, age_effect = rng.normal(0, 1, (2, _FACTORS))
    user_factors = (
        rng.normal(0, 0.7, (num_users, _FACTORS))
        + np.where(gender, 1.0, -1.0)[:, None] * gender_effect * 0.5
        + ((age - 40) / 20)[:, None] * age_effect * 0.5
    ).astype(np.float32)

    genre_factors = rng.normal(0, 1, (_NUM_GENRES, _FACTORS))
    num_genres = rng.integers(1, 4, num_items)
    genres = [np.sort(rng.choice(_NUM_GENRES, n, replace=False)) for n in num_genres]
    item_factors = np.stack([genre_factors[g].mean(0) for g in genres]) + rng.normal(0, 0.5, (num_items, _FACTORS))
    item_factors = item_factors.astype(np.float32) / np.sqrt(_FACTORS)
    log_popularity = -1.1 * np.log1p(rng.permutation(num_items)).astype(np.float32)

    counts = np.clip(rng.poisson(interactions_per_user, num_users), 5, num_items - 1)
    users_of, items_of, affinity = [], [], []
    for start in range(0, num_users, 1024):
        stop = min(start + 1024, num_users)
        scores = user_factors[start:stop] @ item_factors.T
        gumbel = -np.log(rng.standard_exponential(size=scores.shape, dtype=np.float32))
        noisy = scores + log_popularity + gumbel
        most = counts[start:stop].max()
        candidates = np.argpartition(-noisy, most - 1, axis=1)[:, :most]
        order = np.argsort(-np.take_along_axis(noisy, candidates, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(candidates, order, axis=1)
        for row, user in enumerate(range(start, stop)):
            chosen = top[row, : counts[user]]
            users_of.append(np.full(len(chosen), user))
            items_of.append(chosen)
            affinity.append(scores[row, chosen])
    users_of, items_of, affinity = map(np.concatenate, (users_of, items_of, affinity))
    noise = rng.normal(0, 0.6, len(affinity))
    rating = np.clip(np.round(3.4 + 1.5 * np.tanh(affinity) + noise), 1, 5).astype(np.float32)
    timestamp = _START_TIME + rng.integers(0, 365 * 86_400, len(affinity))

    user_ids = np.array([f"u{u}" for u in range(num_users)], dtype=object)
    item_ids = np.array([f"i{i}" for i in range(num_items)], dtype=object)
    ratings = pa.table(
        [pa.array(user_ids[users_of]), pa.array(item_ids[items_of]), pa.array(rating), pa.array(timestamp)],
        schema=RATINGS_SCHEMA,
    )
    users = pa.table(
        [
            pa.array(user_ids),
            pa.array(gender),
            pa.array(age),
            pa.array(bucket),
            pa.array(occupation, type=pa.int64()),
            pa.array([OCCUPATIONS[o] for o in occupation]),
            pa.array([f"{z:05d}" for z in rng.integers(0, 1000, num_users) * 97]),
        ],
        schema=USERS_SCHEMA,
    )
    items = pa.table(
        [
            pa.array(item_ids),
            pa.array([f"Item {i} genre{' genre'.join(map(str, g))}" for i, g in enumerate(genres)]),
            pa.array([g.tolist() for g in genres], type=pa.list_(pa.int64())),
        ],
        schema=ITEMS_SCHEMA,
    )
    lineage = {
        "source": "synthetic",
        "num_users": num_users,
        "num_items": num_items,
        "interactions_per_user": interactions_per_user,
        "seed": seed,
        "num_ratings": ratings.num_rows,
    }
    return InteractionData(ratings=ratings, users=users, items=items, lineage=lineage)
