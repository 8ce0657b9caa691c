"""Keras layers that turn raw feature dicts into vectors, built from the feature schema.

Every lookup has one out-of-vocabulary bucket (index 0), so ids and values
unknown at training time get a trained OOV embedding instead of an error.

Under a mixed dtype policy (`training.precision`) the encoders read the raw features
uncast (`autocast=False`: timestamps and prices keep their precision until normalised)
and return vectors in the policy's compute dtype.
"""

from __future__ import annotations

import math

import tensorflow as tf

from recsys_core.features.keras_config import ArgumentsConfig, register
from recsys_core.features.vocabulary import SECONDS_PER_DAY, FeatureVocabulary, NumericStats
from recsys_core.schema import HISTORY, ITEM_ID, PADDING, TIMESTAMP, USER_ID, Feature

_SECONDS_PER_HOUR = 3600.0


def embedding(rows: int, dim: int, l2: float) -> tf.keras.layers.Embedding:
    """`Embedding(rows, dim)` with optional L2 regularisation."""
    regularizer = tf.keras.regularizers.l2(l2) if l2 else None
    return tf.keras.layers.Embedding(rows, dim, embeddings_regularizer=regularizer)


def string_lookup(vocabulary: list[str]) -> tf.keras.layers.StringLookup:
    """Index 0 is the OOV bucket; known values are 1..len(vocabulary)."""
    return tf.keras.layers.StringLookup(vocabulary=vocabulary, mask_token=None, num_oov_indices=1)


@register
class IdEmbedding(ArgumentsConfig, tf.keras.layers.Layer):
    """`[...]` string ids -> `[..., dim]` rows of a learned table; ids outside `vocabulary` share row 0.

    A `StringLookup` over `vocabulary`, then an `Embedding` of `len(vocabulary) + 1` rows (L2 penalty `l2`,
    initialised by `initializer`) in this layer's dtype policy.
    """

    def __init__(self, vocabulary: list[str], dim: int, l2: float = 0.0, initializer: str = "uniform", **kwargs):
        super().__init__(**kwargs)
        self.lookup = string_lookup(vocabulary)
        regularizer = tf.keras.regularizers.l2(l2) if l2 else None
        self.table = tf.keras.layers.Embedding(
            len(vocabulary) + 1,
            dim,
            embeddings_initializer=initializer,
            embeddings_regularizer=regularizer,
            dtype=self.dtype_policy,
        )

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        return self.table(self.lookup(ids))


def value_lookup(vocabulary: list, dtype: str) -> tf.keras.layers.Layer:
    """A string or integer lookup (bools are looked up as 0/1), OOV at index 0."""
    if dtype == "string":
        return string_lookup(vocabulary)
    return tf.keras.layers.IntegerLookup(vocabulary=vocabulary, mask_token=None, num_oov_indices=1)


def normalized(values: tf.Tensor, stats: NumericStats) -> tf.Tensor:
    """`(clip(values, low, high) - mean) / std` in float64 (timestamps exceed float32), `[batch, 1]`.

    Clipping to the training range keeps dense layers from extrapolating, e.g. when
    a model trained on older data scores users today.
    """
    clipped = tf.clip_by_value(tf.cast(values, tf.float64), stats.low, stats.high)
    return tf.cast((clipped - stats.mean) / stats.std, tf.float32)[:, None]


def cyclic_time(timestamp: tf.Tensor) -> tf.Tensor:
    """sin/cos of hour of day and hour of week, `[batch]` seconds -> `[batch, 4]`."""
    hours = tf.cast(timestamp, tf.float64) / _SECONDS_PER_HOUR
    day = 2.0 * math.pi * tf.math.floormod(hours, 24.0) / 24.0
    week = 2.0 * math.pi * tf.math.floormod(hours, 168.0) / 168.0
    return tf.cast(tf.stack([tf.sin(day), tf.cos(day), tf.sin(week), tf.cos(week)], axis=1), tf.float32)


def masked_mean(embeddings: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean over axis 1 of `[batch, n, dim]` where `mask` `[batch, n]` is true; zeros if none."""
    weights = tf.cast(mask, embeddings.dtype)[:, :, None]
    return tf.reduce_sum(embeddings * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)


def numeric_input(feature: Feature, features: dict[str, tf.Tensor]) -> tf.Tensor:
    """`[batch]` float64 value a model reads of a numeric or timestamp feature (see `vocabulary.numeric_values`)."""
    values = tf.cast(features[feature.name], tf.float64)
    if feature.kind == "timestamp":
        if feature.entity == "user":
            values = tf.cast(features[TIMESTAMP], tf.float64) - values
        return values / SECONDS_PER_DAY
    return tf.math.log1p(tf.maximum(values, 0.0)) if feature.log else values


@register
class FeatureEmbeddings(ArgumentsConfig, tf.keras.layers.Layer):
    """Schema features -> dense numbers and embeddings.

    Categorical values are embedded; multi-valued ones and text words are
    mean-embedded; numeric and timestamp features are normalised `[batch, 1]`
    columns (numerics with `buckets` are also embedded by training quantile).

    `call` returns `(dense, embedded)`: a `[batch, n_dense]` tensor (None if no
    numbers) and a list of `[batch, dim]` tensors named by `embedded_names`.
    """

    def __init__(self, features: tuple[Feature, ...], vocab: FeatureVocabulary, dim: int, l2: float, **kwargs) -> None:
        super().__init__(autocast=False, **kwargs)
        self._features = features
        self._vocab = vocab
        self.lookups, self.tables, self.buckets = {}, {}, {}
        self.embedded_names = []
        for feature in features:
            values = vocab.categories.get(feature.name, [])
            if feature.kind in ("categorical", "multi_categorical"):
                self.lookups[feature.name] = value_lookup(values, feature.dtype)
                self.tables[feature.name] = embedding(len(values) + 1, dim, l2)
            elif feature.kind == "text":
                self.lookups[feature.name] = tf.keras.layers.TextVectorization(vocabulary=values or ["_"])
                self.tables[feature.name] = embedding(len(values) + 2, dim, l2)
            elif feature.buckets:
                boundaries = vocab.numbers[feature.name].boundaries
                self.buckets[feature.name] = tf.keras.layers.Discretization(bin_boundaries=boundaries)
                self.tables[feature.name] = embedding(len(boundaries) + 1, dim, l2)
            if feature.name in self.tables:
                self.embedded_names.append(feature.name)

    def call(self, features: dict[str, tf.Tensor]) -> tuple[tf.Tensor | None, list[tf.Tensor]]:
        dense, embedded = [], []
        for feature in self._features:
            name, raw = feature.name, features[feature.name]
            if feature.kind == "categorical":
                indices = self.lookups[name](tf.cast(raw, tf.int64) if feature.dtype == "bool" else raw)
                embedded.append(self.tables[name](indices))
            elif feature.kind == "multi_categorical":  # [batch, n] padded with b""
                embedded.append(masked_mean(self.tables[name](self.lookups[name](raw)), raw != PADDING))
            elif feature.kind == "text":
                tokens = self.lookups[name](raw)  # [batch, words], 0 = padding
                embedded.append(masked_mean(self.tables[name](tokens), tokens != 0))
            else:
                value = numeric_input(feature, features)
                dense.append(normalized(value, self._vocab.numbers[name]))
                if name in self.buckets:
                    embedded.append(self.tables[name](self.buckets[name](value)))
        return (tf.cast(tf.concat(dense, axis=1), self.compute_dtype) if dense else None), embedded


def _concat(dense: tf.Tensor | None, embedded: list[tf.Tensor]) -> list[tf.Tensor]:
    return embedded + ([dense] if dense is not None else [])


@register
class QueryEncoder(ArgumentsConfig, tf.keras.layers.Layer):
    """User id, user features, time context and history -> `[batch, width]`.

    The history is the mean embedding of the user's recent items (`user_history`,
    `[batch, n]` ids padded with b""). When the features also name an item
    (`item_id`: a training example or a rated pair), that item is left out of
    its own history, so training never sees the answer in the question.
    """

    def __init__(
        self,
        features: tuple[Feature, ...],
        vocab: FeatureVocabulary,
        embedding_dim: int,
        use_user_features: bool = True,
        use_time: bool = True,
        use_history: bool = False,
        l2: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(autocast=False, **kwargs)
        side = max(4, embedding_dim // 4)
        self._vocab = vocab
        self._use_time = use_time
        self.use_history = use_history
        if use_history:
            self.history = IdEmbedding(vocab.item_ids, embedding_dim, l2)
        self.user_id = IdEmbedding(vocab.user_ids, embedding_dim, l2)
        self.user_features = FeatureEmbeddings(features if use_user_features else (), vocab, side, l2)
        if use_time:
            boundaries = vocab.numbers[TIMESTAMP].boundaries
            self.time_bucket = tf.keras.layers.Discretization(bin_boundaries=boundaries)
            self.time_embedding = embedding(len(boundaries) + 1, side, l2)

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        parts = [self.user_id(features[USER_ID])]
        parts += _concat(*self.user_features(features))
        if self._use_time:
            timestamp = features[TIMESTAMP]
            parts += [
                self.time_embedding(self.time_bucket(tf.cast(timestamp, tf.float64))),
                tf.cast(normalized(timestamp, self._vocab.numbers[TIMESTAMP]), self.compute_dtype),
            ]
        if self.use_history:
            history = features[HISTORY]
            keep = history != PADDING
            if ITEM_ID in features:
                keep &= history != features[ITEM_ID][:, None]
            parts.append(masked_mean(self.history(history), keep))
        return tf.concat(parts, axis=1)


@register
class ItemEncoder(ArgumentsConfig, tf.keras.layers.Layer):
    """Item id and item features -> `[batch, width]`."""

    def __init__(
        self, features: tuple[Feature, ...], vocab: FeatureVocabulary, embedding_dim: int, l2: float = 0.0, **kwargs
    ) -> None:
        super().__init__(autocast=False, **kwargs)
        self.item_id = IdEmbedding(vocab.item_ids, embedding_dim, l2)
        self.item_features = FeatureEmbeddings(features, vocab, embedding_dim, l2)

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        parts = [self.item_id(features[ITEM_ID])]
        return tf.concat(parts + _concat(*self.item_features(features)), axis=1)
