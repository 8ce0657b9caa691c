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
# Numbers kept per feature for its quantile buckets (4 MB); beyond, a uniform sample: a bucket edge's
# quantile is then off by 0.001 at most (standard error of a quantile, sqrt(q (1 - q) / n), <= 0.001).
QUANTILE_SAMPLE = 2**18
SECONDS_PER_DAY = 86_400.0


@dataclasses.dataclass
class NumericStats:
    """Normalisation of one number: `(clip(x, low, high) - mean) / std`, and its quantile bucket edges."""

    mean: float
    std: float
    low: float
    high: float
    boundaries: list[float]


class NumberSummary:
    """Mean, spread and range of numbers given in batches (exact), and a uniform sample of at most
    `sample_size` of them for the quantiles (all of them, so exact quantiles, up to that many)."""

    def __init__(self, sample_size: int = QUANTILE_SAMPLE, seed: int = 0) -> None:
        self._count, self._mean, self._squares = 0, 0.0, 0.0
        self._low, self._high = np.inf, -np.inf
        self._size, self._rng = sample_size, np.random.default_rng(seed)
        self._sample, self._keys = np.zeros(0), np.zeros(0)

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, np.float64)
        if not len(values):
            return
        count, mean = len(values), float(values.mean())
        # Chan et al.'s merge of two (count, mean, sum of squared deviations).
        total = self._count + count
        delta = mean - self._mean
        self._squares += float(values.var()) * count + delta**2 * self._count * count / total
        self._mean += delta * count / total
        self._count = total
        self._low, self._high = min(self._low, float(values.min())), max(self._high, float(values.max()))
        # Bottom-k of uniform keys: a uniform sample without replacement of everything seen.
        self._sample = np.concatenate([self._sample, values])
        self._keys = np.concatenate([self._keys, self._rng.random(count)])
        if len(self._sample) > self._size:
            keep = np.argpartition(self._keys, self._size)[: self._size]
            self._sample, self._keys = self._sample[keep], self._keys[keep]

    def stats(self, buckets: int) -> NumericStats:
        """The `NumericStats` of every value added (of one 0.0 if none was)."""
        if not self._count:
            self.add(np.zeros(1))
        quantiles = np.linspace(0, 1, buckets + 1)[1:-1]
        edges = np.unique(np.quantile(self._sample, quantiles)) if buckets else []
        std = float(np.sqrt(self._squares / self._count))
        return NumericStats(self._mean, std or 1.0, self._low, self._high, list(map(float, edges)))


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
    builder = VocabularyBuilder(train)
    builder.add(train)
    return builder.build()


class VocabularyBuilder:
    """`fit_vocabulary` over training interactions given in batches, holding the entity tables, one mark per
    user and item, and a bounded sample of each number (`NumberSummary`), never the interactions."""

    def __init__(self, tables) -> None:
        """`tables`: an `InteractionData` with the users and items tables (its ratings are not read)."""
        self._tables = tables
        self._users = np.zeros(tables.users.num_rows, bool)
        self._items = np.zeros(tables.items.num_rows, bool)
        self._numbers = {
            f.name: NumberSummary(seed=index)
            for index, f in enumerate(tables.schema.features)
            if f.kind not in ("categorical", "multi_categorical", "text")
        }
        self._times = NumberSummary(seed=len(tables.schema.features))
        self._ratings, self._rating_sum = 0, 0.0

    def add(self, part) -> None:
        """Adds the ratings of `part`, an `InteractionData` over the same users and items."""
        timestamps = part.ratings[TIMESTAMP].to_numpy()
        for key, seen in ((USER_ID, self._users), (ITEM_ID, self._items)):
            table = self._tables.users if key == USER_ID else self._tables.items
            seen[pc.index_in(part.ratings[key], value_set=table[key].combine_chunks()).to_numpy()] = True
        for feature in part.schema.features:
            if feature.name in self._numbers:
                values = numeric_values(feature, part.column(feature.name).to_numpy(), timestamps)
                self._numbers[feature.name].add(values)
        self._times.add(timestamps)
        self._ratings += part.ratings.num_rows
        self._rating_sum += float(part.ratings[RATING].to_numpy().astype(np.float64).sum())

    def build(self) -> FeatureVocabulary:
        users = self._tables.users.filter(pa.array(self._users))
        items = self._tables.items.filter(pa.array(self._items))
        categories = {}
        for feature in self._tables.schema.features:
            table = users if feature.entity == "user" else items
            if feature.kind in ("categorical", "multi_categorical"):
                categories[feature.name] = _values(table[feature.name], feature)
            elif feature.kind == "text":
                categories[feature.name] = _tokens(table[feature.name])
        numbers = {
            f.name: self._numbers[f.name].stats(f.buckets)
            for f in self._tables.schema.features
            if f.name in self._numbers
        }
        numbers[TIMESTAMP] = self._times.stats(_TIME_BUCKETS)
        return FeatureVocabulary(
            user_ids=sorted(users[USER_ID].to_pylist()),
            item_ids=sorted(items[ITEM_ID].to_pylist()),
            categories=categories,
            numbers=numbers,
            rating_mean=self._rating_sum / max(1, self._ratings),
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
