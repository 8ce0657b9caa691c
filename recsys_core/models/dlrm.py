"""DLRM (dot interaction) and DCN (cross layers) rating scorers.

As in the KerasRS DLRM tutorial: categorical features (user_id, movie_id,
gender, zip code, occupation, and the movie's genres as a mean embedding) are
embedded; continuous features (raw age, sin/cos of hour of day and hour of week)
go through a bottom MLP to the embedding width; `DotInteraction` takes all
pairwise dot products; a top MLP predicts the rating, to which user and item
biases are added. The DCN variant feeds the concatenated features through
`Cross` layers instead (`CrossHead`).
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core.features.encoders import (
    cyclic_time,
    embedding,
    known_category,
    masked_mean,
    normalized,
    string_lookup,
)
from recsys_core.features.schema import GENRE_PADDING
from recsys_core.features.vocabulary import FeatureVocabulary

CATEGORICAL_FEATURES = ("user_id", "movie_id", "user_gender", "user_zip_code", "user_occupation_label")
# Names of the interaction inputs, in order: the bottom MLP output first, the mean genre embedding last.
INTERACTION_INPUTS = ("dense",) + CATEGORICAL_FEATURES + ("movie_genres",)


class DlrmEmbeddings(tf.keras.layers.Layer):
    """Embeds the categorical features and the bottom MLP over continuous ones.

    Returns a list of `[batch, embedding_dim]` tensors named by `INTERACTION_INPUTS`.
    """

    def __init__(
        self,
        vocab: FeatureVocabulary,
        embedding_dim: int,
        bottom_layers: tuple[int, ...],
        l2: float,
        use_time: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self._vocab = vocab
        self._use_time = use_time
        self.user_lookup = string_lookup(vocab.user_ids)
        self.movie_lookup = string_lookup(vocab.movie_ids)
        self.zip_lookup = string_lookup(vocab.zip_codes)
        self.embeddings = {
            "user_id": embedding(len(vocab.user_ids) + 1, embedding_dim, l2),
            "movie_id": embedding(len(vocab.movie_ids) + 1, embedding_dim, l2),
            "user_gender": embedding(2, embedding_dim, l2),
            "user_zip_code": embedding(len(vocab.zip_codes) + 1, embedding_dim, l2),
            "user_occupation_label": embedding(vocab.num_occupations + 1, embedding_dim, l2),
        }
        self.genre_embedding = embedding(vocab.num_genres + 1, embedding_dim, l2)
        self.bottom = tfrs.layers.blocks.MLP(list(bottom_layers) + [embedding_dim], final_activation="relu")

    def call(self, features: dict[str, tf.Tensor]) -> list[tf.Tensor]:
        vocab = self._vocab
        indices = {
            "user_id": self.user_lookup(features["user_id"]),
            "movie_id": self.movie_lookup(features["movie_id"]),
            "user_gender": tf.cast(features["user_gender"], tf.int32),
            "user_zip_code": self.zip_lookup(features["user_zip_code"]),
            "user_occupation_label": known_category(features["user_occupation_label"], self._vocab.num_occupations),
        }
        continuous = normalized(features["raw_user_age"], vocab.age_mean, vocab.age_std, vocab.age_range)
        if self._use_time:
            continuous = tf.concat([continuous, cyclic_time(features["timestamp"])], axis=1)
        genres = features["movie_genres"]  # [batch, max_genres], padded with -1
        known = (genres > GENRE_PADDING) & (genres < vocab.num_genres)
        genre = masked_mean(self.genre_embedding(tf.where(known, genres + 1, 0)), known)
        categorical = [self.embeddings[name](indices[name]) for name in CATEGORICAL_FEATURES]
        return [self.bottom(continuous)] + categorical + [genre]


class DotInteractionHead(tf.keras.layers.Layer):
    """DLRM's interaction: the bottom-MLP vector beside all pairwise dot products, `[batch, d + n(n-1)/2]`."""

    def __init__(self, self_interaction: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dot = tfrs.layers.feature_interaction.DotInteraction(self_interaction=self_interaction)

    def call(self, vectors: list[tf.Tensor]) -> tf.Tensor:
        return tf.concat([vectors[0], self.dot(vectors)], axis=1)


class CrossHead(tf.keras.layers.Layer):
    """DCN's interaction: `num_layers` `Cross` layers over the concatenated vectors, `[batch, n * d]`."""

    def __init__(self, num_layers: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cross = [tfrs.layers.feature_interaction.Cross() for _ in range(num_layers)]

    def call(self, vectors: list[tf.Tensor]) -> tf.Tensor:
        x0 = hidden = tf.concat(vectors, axis=1)
        for layer in self.cross:
            hidden = layer(x0, hidden)
        return hidden


class DlrmScorer(tf.keras.Model):
    """`DlrmEmbeddings` -> an interaction head -> top MLP, plus user and item biases: features -> `[batch]` ratings.

    The biases (as in the ranking model) carry what a user or an item adds to every
    rating, which dot products with the few dense features express poorly.
    """

    def __init__(
        self,
        embeddings: DlrmEmbeddings,
        interaction: tf.keras.layers.Layer,
        top_layers: tuple[int, ...],
        biases: tuple[tf.keras.layers.Layer, tf.keras.layers.Layer],
        rating_mean: float,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.embeddings = embeddings
        self.interaction = interaction
        self.user_bias, self.item_bias = biases
        self.top = tfrs.layers.blocks.MLP(list(top_layers) + [1], use_bias=True, final_activation=None)
        self.top_bias = self.add_weight(
            name="rating_mean", shape=(), initializer=tf.keras.initializers.Constant(rating_mean)
        )

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        hidden = self.interaction(self.embeddings(features))
        rating = self.top(hidden) + self.user_bias(features) + self.item_bias(features) + self.top_bias
        return tf.squeeze(rating, axis=1)

    def interaction_matrix(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """Mean absolute pairwise dot product of the interaction inputs, `[n, n]`."""
        stacked = tf.stack(self.embeddings(features), axis=1)  # [batch, n, dim]
        return tf.reduce_mean(tf.abs(tf.matmul(stacked, stacked, transpose_b=True)), axis=0)
