"""Vocabularies and statistics of every schema feature, fit on the training split only.

Anything seen only in the test split (or first seen at scoring time) maps to
the out-of-vocabulary bucket of its lookup layer; numbers outside the training
range are clipped to it.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_core.schema import ITEM_ID, RATING, TIMESTAMP, USER_ID, Feature

_TIME_BUCKETS = 32
_MAX_TEXT_TOKENS = 20_000
SECONDS_PER_DAY = 86_400.0


@dataclasses.dataclass
class NumericStats:
    """Normalisation of one number: `(clip(x, low, high) - mean) / std`, and its quantile bucket edges."""

    mean: float
    std: float
    low: float
    high: float
    boundaries: list[float]

    @classmethod
    def fit(cls, values: np.ndarray, buckets: int) -> NumericStats:
        values = np.asarray(values, np.float64)
        if not len(values):
            values = np.zeros(1)
        edges = np.unique(np.quantile(values, np.linspace(0, 1, buckets + 1)[1:-1])) if buckets else []
        return cls(
            float(values.mean()),
            float(values.std() or 1.0),
            float(values.min()),
            float(values.max()),
            list(map(float, edges)),
        )


@dataclasses.dataclass
class FeatureVocabulary:
    """Everything the preprocessing layers need, fit on training interactions.

    Attributes:
        user_ids / item_ids: id vocabularies.
        categories: feature name -> its known values (categorical and multi-valued
            ones: strings or ints; text features: their word tokens).
        numbers: feature name -> `NumericStats` of numeric features (after `log`),
            of timestamp features (in days: since the user's value for user
            features, since the epoch for item ones) and of `timestamp` (seconds).
        rating_mean: mean training rating (initial bias of rating heads).
    """

    user_ids: list[str]
    item_ids: list[str]
    categories: dict[str, list]
    numbers: dict[str, NumericStats]
    rating_mean: float

    def sizes(self) -> dict[str, int]:
        """Vocabulary sizes, for the bundle manifest."""
        return {
            USER_ID: len(self.user_ids),
            ITEM_ID: len(self.item_ids),
            **{name: len(values) for name, values in self.categories.items()},
        }

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FeatureVocabulary:
        fields = json.loads(text)
        fields["numbers"] = {name: NumericStats(**stats) for name, stats in fields["numbers"].items()}
        return cls(**fields)


def fit_vocabulary(train) -> FeatureVocabulary:
    """Fits vocabularies and statistics on training interactions and the users and items they name.

    Args:
        train: an `InteractionData` (its ratings, `users`, `items` and `schema`); numeric features are
            read per rating, a column at a time (`InteractionData.column`).
    """
    users = _present(train.users, USER_ID, train.ratings)
    items = _present(train.items, ITEM_ID, train.ratings)
    timestamps = train.ratings[TIMESTAMP].to_numpy()
    categories, numbers = {}, {}
    for feature in train.schema.features:
        table = users if feature.entity == "user" else items
        if feature.kind in ("categorical", "multi_categorical"):
            categories[feature.name] = _values(table[feature.name], feature)
        elif feature.kind == "text":
            categories[feature.name] = _tokens(table[feature.name])
        else:
            values = numeric_values(feature, train.column(feature.name).to_numpy(), timestamps)
            numbers[feature.name] = NumericStats.fit(values, feature.buckets)
    numbers[TIMESTAMP] = NumericStats.fit(timestamps, _TIME_BUCKETS)
    return FeatureVocabulary(
        user_ids=_sorted_unique(train.ratings[USER_ID]),
        item_ids=_sorted_unique(train.ratings[ITEM_ID]),
        categories=categories,
        numbers=numbers,
        rating_mean=float(train.ratings[RATING].to_numpy().mean()),
    )


def numeric_values(feature: Feature, values: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """What a model reads of a numeric or timestamp feature, in numpy (the layers do the same in TF).

    Numeric: `log1p(max(x, 0))` if `feature.log`, else x. Timestamp: days from it to
    the interaction for user features, days since the epoch for item features.
    """
    values = np.asarray(values, np.float64)
    if feature.kind == "timestamp":
        return (np.asarray(timestamps, np.float64) - values if feature.entity == "user" else values) / SECONDS_PER_DAY
    return np.log1p(np.maximum(values, 0.0)) if feature.log else values


def _present(table: pa.Table, key: str, ratings: pa.Table) -> pa.Table:
    """Rows of `table` whose id occurs in the training ratings."""
    return table.filter(pc.is_in(table[key], value_set=pc.unique(ratings[key])))


def _values(column: pa.ChunkedArray, feature: Feature) -> list:
    values = pc.list_flatten(column) if feature.kind == "multi_categorical" else column
    if feature.dtype == "bool":
        values = values.cast(pa.int64())
    known = pc.unique(values).drop_null().to_pylist()
    return sorted(v for v in known if v != "")


def _tokens(column: pa.ChunkedArray) -> list[str]:
    import tensorflow as tf

    text = tf.keras.layers.TextVectorization(max_tokens=_MAX_TEXT_TOKENS)
    text.adapt(pc.unique(column).to_numpy(zero_copy_only=False).astype(object))
    return [t for t in text.get_vocabulary() if t not in ("", "[UNK]")]


def _sorted_unique(column) -> list[str]:
    return sorted(pc.unique(column).to_pylist())
