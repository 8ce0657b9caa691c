"""A seeded synthetic shop: orders of a catalogue with categories, brands, prices and tags (`schemas/shop.json`).

The second shape of data the tests and the docs run end to end, with effects a
model can learn and that the baselines cannot see:

- a user's taste for each category comes from their country and age group, plus
  noise of their own, so user features predict what they buy and how they rate it;
- each brand has a quality that raises its ratings, and belongs to one category;
- a user's budget grows with age; items far above it are bought less;
- item popularity is Zipf-skewed; tags and titles repeat category and brand words.

Ratings are 1-5 from `3.2 + 1.4 * tanh(taste) + quality + noise`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from recsys_core.data.synthetic import check_sizes, choose_items
from recsys_core.data.tables import RATINGS_SCHEMA, InteractionData
from recsys_core.schema import load_schema

COUNTRIES = ("DE", "FR", "GB", "IT", "ES", "PL", "NL", "SE")
CATEGORIES = (
    "Electronics", "Books", "Garden", "Toys", "Kitchen", "Sports",
    "Beauty", "Music", "Fashion", "Office", "Pets", "Grocery",
)  # fmt: skip
TAGS = ("eco", "premium", "bestseller", "new", "gift", "compact", "kids", "pro", "vintage", "handmade")
_BRANDS_PER_CATEGORY = 4
_START_TIME = 1_640_000_000
_YEAR = 365 * 86_400


def synthetic_shop(num_users: int, num_items: int, orders_per_user: int, seed: int) -> InteractionData:
    """Generates customers, a catalogue and rated orders.

    Args:
        num_users: number of customers, each with at least 5 orders.
        num_items: catalogue size; must exceed `orders_per_user`.
        orders_per_user: mean orders per customer (Poisson).
        seed: makes the result reproducible.
    """
    check_sizes(num_users, num_items, orders_per_user)
    rng = np.random.default_rng(seed)
    num_categories = len(CATEGORIES)
    # Customers: taste per category = country effect + age-group effect + their own.
    country = rng.integers(0, len(COUNTRIES), num_users)
    age = rng.integers(18, 75, num_users).astype(np.float32)
    age_group = np.digitize(age, [30, 45, 60])
    country_taste = rng.normal(0, 1.0, (len(COUNTRIES), num_categories))
    age_taste = rng.normal(0, 1.0, (4, num_categories))
    taste = country_taste[country] + age_taste[age_group] + rng.normal(0, 0.5, (num_users, num_categories))
    budget = 2.5 + 0.025 * (age - 18) + rng.normal(0, 0.3, num_users)  # log price a customer is at ease with
    signup = _START_TIME + rng.integers(0, 2 * _YEAR, num_users)

    # Catalogue: each item has a category and one of its brands, a price and tags.
    category = rng.integers(0, num_categories, num_items)
    brand = category * _BRANDS_PER_CATEGORY + rng.integers(0, _BRANDS_PER_CATEGORY, num_items)
    quality = rng.normal(0, 0.5, num_categories * _BRANDS_PER_CATEGORY)
    log_price = rng.normal(3.0, 0.5, num_categories)[category] + 0.4 * quality[brand] + rng.normal(0, 0.4, num_items)
    log_popularity = -1.0 * np.log1p(rng.permutation(num_items)).astype(np.float32)

    def affinity(rows: slice) -> np.ndarray:
        """Taste for the item's category, less a penalty for prices above the customer's budget."""
        over_budget = np.maximum(log_price[None, :] - budget[rows, None], 0)
        return taste[rows][:, category] - 0.8 * over_budget

    users_of, items_of, affinity = choose_items(rng, affinity, log_popularity, num_users, orders_per_user)
    noise = rng.normal(0, 0.5, len(affinity))
    rating = np.clip(np.round(3.2 + 1.4 * np.tanh(affinity) + quality[brand[items_of]] + noise), 1, 5)
    timestamp = signup[users_of] + rng.integers(0, _YEAR, len(affinity))

    user_ids = np.array([f"c{u}" for u in range(num_users)], dtype=object)
    item_ids = np.array([f"sku{i}" for i in range(num_items)], dtype=object)
    schema = load_schema("shop")
    ratings = pa.table(
        [
            pa.array(user_ids[users_of]),
            pa.array(item_ids[items_of]),
            pa.array(rating.astype(np.float32)),
            pa.array(timestamp.astype(np.int64)),
        ],
        schema=RATINGS_SCHEMA,
    )
    users = pa.table(
        [pa.array(user_ids), pa.array([COUNTRIES[c] for c in country]), pa.array(age), pa.array(signup)],
        schema=schema.table_schema("user"),
    )
    brand_names = [f"{CATEGORIES[b // _BRANDS_PER_CATEGORY].lower()}-brand-{b % _BRANDS_PER_CATEGORY}" for b in brand]
    tags = [sorted(rng.choice(TAGS, rng.integers(0, 3), replace=False).tolist()) for _ in range(num_items)]
    items = pa.table(
        [
            pa.array(item_ids),
            pa.array([CATEGORIES[c] for c in category]),
            pa.array(brand_names),
            pa.array(tags, type=pa.list_(pa.string())),
            pa.array(np.round(np.exp(log_price), 2).astype(np.float32)),
            pa.array([f"{b} {CATEGORIES[c].lower()} item {i}" for i, (b, c) in enumerate(zip(brand_names, category))]),
        ],
        schema=schema.table_schema("item"),
    )
    lineage = {
        "source": "shop",
        "synthetic": True,
        "num_users": num_users,
        "num_items": num_items,
        "orders_per_user": orders_per_user,
        "seed": seed,
        "num_ratings": ratings.num_rows,
    }
    return InteractionData(ratings=ratings, users=users, items=items, schema=schema, lineage=lineage)
