"""Keras layers that turn raw feature dicts into dense vectors.

The lookup vocabularies come from a `FeatureVocabulary` fit on the training
split; every lookup has one out-of-vocabulary bucket, so unknown ids at
scoring time get a (trained) OOV embedding instead of an error.
"""

from __future__ import annotations

import math

import tensorflow as tf

from recsys_core.data.tables import AGE_BUCKETS
from recsys_core.features.schema import GENRE_PADDING, HISTORY, HISTORY_PADDING
from recsys_core.features.vocabulary import FeatureVocabulary

_SECONDS_PER_HOUR = 3600.0


def embedding(rows: int, dim: int, l2: float) -> tf.keras.layers.Embedding:
    """`Embedding(rows, dim)` with optional L2 regularisation."""
    regularizer = tf.keras.regularizers.l2(l2) if l2 else None
    return tf.keras.layers.Embedding(rows, dim, embeddings_regularizer=regularizer)


def string_lookup(vocabulary: list[str]) -> tf.keras.layers.StringLookup:
    """Index 0 is the OOV bucket; known values are 1..len(vocabulary)."""
    return tf.keras.layers.StringLookup(vocabulary=vocabulary, mask_token=None, num_oov_indices=1)


def normalized(values: tf.Tensor, mean: float, std: float, value_range: tuple[float, float]) -> tf.Tensor:
    """`(clip(values, *value_range) - mean) / std` in float64 (timestamps exceed float32), `[batch, 1]`.

    Clipping to the training range keeps dense layers from extrapolating, e.g. when
    a model trained on 1998 ratings scores users today.
    """
    clipped = tf.clip_by_value(tf.cast(values, tf.float64), value_range[0], value_range[1])
    return tf.cast((clipped - mean) / std, tf.float32)[:, None]


def cyclic_time(timestamp: tf.Tensor) -> tf.Tensor:
    """sin/cos of hour of day and hour of week, `[batch]` seconds -> `[batch, 4]`."""
    hours = tf.cast(timestamp, tf.float64) / _SECONDS_PER_HOUR
    day = 2.0 * math.pi * tf.math.floormod(hours, 24.0) / 24.0
    week = 2.0 * math.pi * tf.math.floormod(hours, 168.0) / 168.0
    return tf.cast(tf.stack([tf.sin(day), tf.cos(day), tf.sin(week), tf.cos(week)], axis=1), tf.float32)


def known_category(ids: tf.Tensor, size: int) -> tf.Tensor:
    """Label ids `[batch]` outside `0..size-1` map to the OOV index `size`."""
    oov = tf.constant(size, ids.dtype)
    return tf.where((ids < 0) | (ids >= size), oov, ids)


def masked_mean(embeddings: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean over axis 1 of `[batch, n, dim]` where `mask` `[batch, n]` is true; zeros if none."""
    weights = tf.cast(mask, embeddings.dtype)[:, :, None]
    return tf.reduce_sum(embeddings * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)


class QueryEncoder(tf.keras.layers.Layer):
    """User id, demographics, time context and history -> `[batch, width]`.

    The history is the mean embedding of the user's recent items (`user_history`,
    `[batch, n]` ids padded with b""). When the features also name an item
    (`movie_id`: a training example or a rated pair), that item is left out of
    its own history, so training never sees the answer in the question.
    """

    def __init__(
        self,
        vocab: FeatureVocabulary,
        embedding_dim: int,
        use_user_features: bool = True,
        use_time: bool = True,
        use_history: bool = False,
        l2: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        side = max(4, embedding_dim // 4)
        self._vocab = vocab
        self._use_user_features = use_user_features
        self._use_time = use_time
        self._use_history = use_history
        if use_history:
            self.history_lookup = string_lookup(vocab.movie_ids)
            self.history_embedding = embedding(len(vocab.movie_ids) + 1, embedding_dim, l2)
        self.user_lookup = string_lookup(vocab.user_ids)
        self.user_embedding = embedding(len(vocab.user_ids) + 1, embedding_dim, l2)
        if use_user_features:
            self.gender_embedding = embedding(2, side, l2)
            self.age_lookup = tf.keras.layers.IntegerLookup(vocabulary=list(AGE_BUCKETS), mask_token=None)
            self.age_embedding = embedding(len(AGE_BUCKETS) + 1, side, l2)
            self.occupation_embedding = embedding(vocab.num_occupations + 1, side, l2)
            self.zip_lookup = string_lookup(vocab.zip_codes)
            self.zip_embedding = embedding(len(vocab.zip_codes) + 1, side, l2)
            self.zip_prefix_lookup = string_lookup([str(d) for d in range(10)])
            self.zip_prefix_embedding = embedding(11, side, l2)
        if use_time:
            self.time_bucket = tf.keras.layers.Discretization(bin_boundaries=vocab.timestamp_boundaries)
            self.time_embedding = embedding(len(vocab.timestamp_boundaries) + 1, side, l2)

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        vocab = self._vocab
        parts = [self.user_embedding(self.user_lookup(features["user_id"]))]
        if self._use_user_features:
            zip_code = features["user_zip_code"]
            parts += [
                self.gender_embedding(tf.cast(features["user_gender"], tf.int32)),
                self.age_embedding(self.age_lookup(tf.cast(features["bucketized_user_age"], tf.int64))),
                normalized(features["raw_user_age"], vocab.age_mean, vocab.age_std, vocab.age_range),
                self.occupation_embedding(
                    known_category(features["user_occupation_label"], self._vocab.num_occupations)
                ),
                self.zip_embedding(self.zip_lookup(zip_code)),
                self.zip_prefix_embedding(self.zip_prefix_lookup(tf.strings.substr(zip_code, 0, 1))),
            ]
        if self._use_time:
            timestamp = features["timestamp"]
            parts += [
                self.time_embedding(self.time_bucket(tf.cast(timestamp, tf.float64))),
                normalized(timestamp, vocab.timestamp_mean, vocab.timestamp_std, vocab.timestamp_range),
            ]
        if self._use_history:
            history = features[HISTORY]
            keep = history != HISTORY_PADDING
            if "movie_id" in features:
                keep &= history != features["movie_id"][:, None]
            parts.append(masked_mean(self.history_embedding(self.history_lookup(history)), keep))
        return tf.concat(parts, axis=1)


class ItemEncoder(tf.keras.layers.Layer):
    """Movie id, title words and genres -> `[batch, width]`."""

    def __init__(
        self,
        vocab: FeatureVocabulary,
        embedding_dim: int,
        use_title: bool = True,
        use_genres: bool = True,
        l2: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self._use_title = use_title
        self._use_genres = use_genres
        self._num_genres = vocab.num_genres
        self.movie_lookup = string_lookup(vocab.movie_ids)
        self.movie_embedding = embedding(len(vocab.movie_ids) + 1, embedding_dim, l2)
        if use_title:
            self.title_vectorizer = tf.keras.layers.TextVectorization(vocabulary=vocab.title_tokens or ["_"])
            self.title_embedding = embedding(len(vocab.title_tokens) + 2, embedding_dim, l2)
        if use_genres:
            self.genre_embedding = embedding(vocab.num_genres + 1, embedding_dim, l2)

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        parts = [self.movie_embedding(self.movie_lookup(features["movie_id"]))]
        if self._use_title:
            tokens = self.title_vectorizer(features["movie_title"])  # [batch, words], 0 = padding
            parts.append(masked_mean(self.title_embedding(tokens), tokens != 0))
        if self._use_genres:
            genres = features["movie_genres"]  # [batch, max_genres], padded with -1
            known = (genres > GENRE_PADDING) & (genres < self._num_genres)
            parts.append(masked_mean(self.genre_embedding(tf.where(known, genres + 1, 0)), known))
        return tf.concat(parts, axis=1)
