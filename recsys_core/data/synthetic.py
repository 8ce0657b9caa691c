"""Seeded synthetic MovieLens-shaped interactions with planted structure, at any scale.

Users and items get latent factors; a user's factor is partly determined by
gender and age, an item's by its genres; item popularity follows a Zipf-like
skew. Each user picks items by a Gumbel top-n over `factor affinity +
log popularity`, and rates them by affinity, so a good model can recover the
structure from ids, demographics and genres. Synthetic data is labelled as such
in the lineage and is never used in place of a real source.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from recsys_core.data.movielens import AGE_BUCKETS, GENRES, OCCUPATIONS, bucketize_age, movielens_schema
from recsys_core.data.tables import RATINGS_SCHEMA, InteractionData

_NUM_GENRES = 19  # the first 19 TFDS genre labels
_FACTORS = 8
_START_TIME = 1_700_000_000


def check_sizes(num_users: int, num_items: int, per_user: int) -> None:
    """`ValueError` unless every size is positive and there are more items than interactions per user."""
    if num_items <= per_user or min(num_users, num_items, per_user) < 1:
        raise ValueError(
            f"need num_users, num_items, interactions per user >= 1 and more items than interactions per user, "
            f"got {num_users}, {num_items}, {per_user}"
        )


def choose_items(
    rng: np.random.Generator,
    affinity: Callable[..., np.ndarray],
    log_popularity: np.ndarray,
    num_users: int,
    per_user: int,
    candidates: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user picks a Poisson(`per_user`) number (at least 5) of distinct items by a Gumbel top-n.

    Exact (`candidates=0`): the Gumbel top-n of `affinity + log popularity` over
    the whole catalogue, `[users, items]` work. With `candidates=c`: `c` draws
    from the popularity distribution per user, then the Gumbel top-n of the
    affinity among the distinct draws, `[users, c]` work, which approximates the
    same distribution (each distinct draw weighted by its count) and keeps a
    100 000-item catalogue fast.

    Args:
        affinity: `(users rows)` -> `[len(rows), items]` taste scores; with candidates,
            `(users rows, [len(rows), c] item indices)` -> `[len(rows), c]`.
        log_popularity: `[items]` log popularity (unnormalised).

    Returns:
        `[interactions]` user indices, item indices and the taste score of each pick.
    """
    num_items = len(log_popularity)
    counts = np.clip(rng.poisson(per_user, num_users), 5, num_items - 1)
    popularity = np.exp(log_popularity - log_popularity.max())
    popularity /= popularity.sum()
    users_of, items_of, picked = [], [], []
    step = max(1, min(1024, 2**24 // (candidates or num_items)))  # a `[step, items]` score block stays near 64 MiB
    for start in range(0, num_users, step):
        rows = slice(start, min(start + step, num_users))
        if candidates:
            pool = np.sort(rng.choice(num_items, size=(rows.stop - start, candidates), p=popularity), axis=1)
            scores = affinity(rows, pool).astype(np.float32)
            # Each distinct draw once, weighted by how often it was drawn: the head's weight keeps growing
            # with popularity instead of saturating at "drawn at least once".
            flat = (pool + np.arange(len(pool))[:, None] * num_items).ravel()
            _, first, drawn = np.unique(flat, return_index=True, return_counts=True)
            multiplicity = np.zeros(pool.size, np.float32)
            multiplicity[first] = drawn
            with np.errstate(divide="ignore"):
                prior = np.log(multiplicity).reshape(pool.shape)
        else:
            pool = np.broadcast_to(np.arange(num_items), (rows.stop - start, num_items))
            scores = affinity(rows)
            prior = log_popularity
        exponential = rng.standard_exponential(size=scores.shape, dtype=np.float32)
        noisy = scores + prior - np.log(np.maximum(exponential, np.finfo(np.float32).tiny))
        most = min(counts[rows].max(), scores.shape[1])
        top = np.argpartition(-noisy, most - 1, axis=1)[:, :most]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(noisy, top, axis=1), axis=1, kind="stable"), 1)
        for row, user in enumerate(range(rows.start, rows.stop)):
            chosen = top[row, : counts[user]]
            chosen = chosen[np.isfinite(noisy[row, chosen])]  # fewer distinct candidates than picks: fewer picks
            users_of.append(np.full(len(chosen), user))
            items_of.append(pool[row, chosen])
            picked.append(scores[row, chosen])
    return tuple(map(np.concatenate, (users_of, items_of, picked)))


def synthetic_interactions(num_users: int, num_items: int, interactions_per_user: int, seed: int) -> InteractionData:
    """Generates users, items and ratings.

    Args:
        num_users: number of users, each with at least 5 interactions.
        num_items: number of items; must exceed `interactions_per_user`.
        interactions_per_user: mean interactions per user (Poisson).
        seed: makes the result reproducible.
    """
    check_sizes(num_users, num_items, interactions_per_user)
    items, item_factors, log_popularity = _catalogue(num_items, seed)
    rng = np.random.default_rng([seed, 1])
    users, ratings = _people(0, num_users, item_factors, log_popularity, interactions_per_user, rng)
    lineage = {
        "source": "synthetic",
        "num_users": num_users,
        "num_items": num_items,
        "interactions_per_user": interactions_per_user,
        "seed": seed,
        "num_ratings": ratings.num_rows,
    }
    return InteractionData(ratings=ratings, users=users, items=items, schema=movielens_schema(), lineage=lineage)


def write_synthetic_parquet(
    root: str,
    num_users: int,
    num_items: int,
    interactions_per_user: int,
    seed: int,
    chunk_users: int = 50_000,
    candidates: int = 512,
) -> dict:
    """Writes `items.parquet`, `users/` and `interactions/` of any size, `chunk_users` users at a time.

    Memory stays that of one chunk (and the item factors), so a million users are
    generated on a small machine. Catalogues larger than `candidates` items are
    sampled through `candidates` popularity draws per user (`choose_items`), so a
    million users x 100 000 items take minutes, not hours. Each chunk has its own
    seeded stream: the same arguments write the same files. Returns row counts.
    """
    import pyarrow.parquet as pq

    check_sizes(num_users, num_items, interactions_per_user)
    items, item_factors, log_popularity = _catalogue(num_items, seed)
    os.makedirs(os.path.join(root, "users"), exist_ok=True)
    os.makedirs(os.path.join(root, "interactions"), exist_ok=True)
    pq.write_table(items, os.path.join(root, "items.parquet"))
    interactions = 0
    for chunk, first in enumerate(range(0, num_users, chunk_users)):
        rng = np.random.default_rng([seed, 1, chunk])
        count = min(chunk_users, num_users - first)
        pool = candidates if num_items > candidates else 0
        users, ratings = _people(first, count, item_factors, log_popularity, interactions_per_user, rng, pool)
        pq.write_table(users, os.path.join(root, "users", f"part-{chunk:05d}.parquet"))
        pq.write_table(ratings, os.path.join(root, "interactions", f"part-{chunk:05d}.parquet"))
        interactions += ratings.num_rows
    return {"users": num_users, "items": num_items, "interactions": interactions}


def _catalogue(num_items: int, seed: int) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Items with genres and titles, their `[items, factors]` latent factors and `[items]` log popularity."""
    rng = np.random.default_rng([seed, 0])
    genre_factors = rng.normal(0, 1, (_NUM_GENRES, _FACTORS))
    num_genres = rng.integers(1, 4, num_items)
    genres = [np.sort(rng.choice(_NUM_GENRES, n, replace=False)) for n in num_genres]
    item_factors = np.stack([genre_factors[g].mean(0) for g in genres]) + rng.normal(0, 0.5, (num_items, _FACTORS))
    item_factors = item_factors.astype(np.float32) / np.sqrt(_FACTORS)
    log_popularity = -1.1 * np.log1p(rng.permutation(num_items)).astype(np.float32)
    items = pa.table(
        [
            pa.array([f"i{i}" for i in range(num_items)]),
            pa.array([f"Item {i} genre{' genre'.join(map(str, g))}" for i, g in enumerate(genres)]),
            pa.array([[GENRES[g] for g in row] for row in genres], type=pa.list_(pa.string())),
        ],
        schema=movielens_schema().table_schema("item"),
    )
    return items, item_factors, log_popularity


def _people(
    first: int,
    num_users: int,
    item_factors: np.ndarray,
    log_popularity: np.ndarray,
    interactions_per_user: int,
    rng: np.random.Generator,
    candidates: int = 0,
) -> tuple[pa.Table, pa.Table]:
    """Users `first .. first + num_users - 1` (demographics shift their taste) and their ratings."""
    gender = rng.random(num_users) < 0.7
    age = rng.integers(AGE_BUCKETS[1] - 5, 70, num_users).astype(np.float32)
    occupation = rng.integers(0, len(OCCUPATIONS), num_users)
    gender_effect, age_effect = np.random.default_rng(0).normal(0, 1, (2, _FACTORS))  # shared by every chunk
    user_factors = (
        rng.normal(0, 0.7, (num_users, _FACTORS))
        + np.where(gender, 1.0, -1.0)[:, None] * gender_effect * 0.5
        + ((age - 40) / 20)[:, None] * age_effect * 0.5
    ).astype(np.float32)

    def affinity(rows: slice, items: np.ndarray | None = None) -> np.ndarray:
        if items is None:
            return user_factors[rows] @ item_factors.T
        return np.einsum("uf,ucf->uc", user_factors[rows], item_factors[items])

    users_of, items_of, affinity = choose_items(
        rng, affinity, log_popularity, num_users, interactions_per_user, candidates
    )
    noise = rng.normal(0, 0.6, len(affinity))
    rating = np.clip(np.round(3.4 + 1.5 * np.tanh(affinity) + noise), 1, 5).astype(np.float32)
    timestamp = _START_TIME + rng.integers(0, 365 * 86_400, len(affinity))
    user_ids = np.array([f"u{u}" for u in range(first, first + num_users)], dtype=object)
    ratings = pa.table(
        [
            pa.array(user_ids[users_of]),
            pa.array([f"i{i}" for i in items_of]),
            pa.array(rating),
            pa.array(timestamp),
        ],
        schema=RATINGS_SCHEMA,
    )
    users = pa.table(
        [
            pa.array(user_ids),
            pa.array(gender),
            pa.array(age),
            pa.array(bucketize_age(age), type=pa.int64()),
            pa.array(occupation, type=pa.int64()),
            pa.array([OCCUPATIONS[o] for o in occupation]),
            pa.array([f"{z:05d}" for z in rng.integers(0, 1000, num_users) * 97]),
        ],
        schema=movielens_schema().table_schema("user"),
    )
    return users, ratings
