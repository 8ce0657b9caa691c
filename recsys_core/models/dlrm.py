"""DLRM (dot interaction) and DCN (cross layers) rating scorers.

As in the KerasRS DLRM tutorial: categorical features (user_id, movie_id,
gender, zip code, occupation) are embedded; continuous features (raw age, sin/cos
of hour of day and hour of week) go through a bottom MLP to the embedding width;
`DotInteraction` takes all pairwise dot products; a top MLP predicts the rating.
The DCN variant feeds the concatenated features through `Cross` layers instead.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core.features.encoders import cyclic_time, embedding, known_category, normalized, string_lookup
from recsys_core.features.vocabulary import FeatureVocabulary

CATEGORICAL_FEATURES = ("user_id", "movie_id", "user_gender", "user_zip_code", "user_occupation_label")
# Names of the DotInteraction inputs, in order: the bottom MLP output first.
INTERACTION_INPUTS = ("dense",) + CATEGORICAL_FEATURES


class DlrmEmbeddings(tf.keras.layers.Layer):
    """Embeds the categorical features and the bottom MLP over continuous ones.

    Returns a list of `[batch, embedding_dim]` tensors named by `INTERACTION_INPUTS`.
    """

    def __init__(
        self, vocab: FeatureVocabulary, embedding_dim: int, bottom_layers: tuple[int, ...], l2: float, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self._vocab = vocab
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
        continuous = tf.concat(
            [
                normalized(features["raw_user_age"], vocab.age_mean, vocab.age_std, vocab.age_range),
                cyclic_time(features["timestamp"]),
            ],
            axis=1,
        )
        return [self.bottom(continuous)] + [self.embeddings[name](indices[name]) for name in CATEGORICAL_FEATURES]


class DlrmScorer(tf.keras.Model):
    """DLRM or DCN head over `DlrmEmbeddings`: features -> `[batch]` ratings."""

    def __init__(
        self,
        embeddings: DlrmEmbeddings,
        interaction: str,
        top_layers: tuple[int, ...],
        cross_layers: int,
        rating_mean: float,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if interaction not in ("dot", "cross"):
            raise ValueError(f"interaction={interaction!r} is not one of: dot, cross")
        self.embeddings = embeddings
        self._interaction = interaction
        if interaction == "dot":
            self.dot = tfrs.layers.feature_interaction.DotInteraction()
        else:
            self.cross = [tfrs.layers.feature_interaction.Cross() for _ in range(cross_layers)]
        self.top = tf.keras.Sequential(
            [tf.keras.layers.Dense(units, activation="relu") for units in top_layers]
            + [tf.keras.layers.Dense(1, bias_initializer=tf.keras.initializers.Constant(rating_mean))]
        )

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        vectors = self.embeddings(features)
        if self._interaction == "dot":
            hidden = tf.concat([vectors[0], self.dot(vectors)], axis=1)
        else:
            x0 = hidden = tf.concat(vectors, axis=1)
            for layer in self.cross:
                hidden = layer(x0, hidden)
        return tf.squeeze(self.top(hidden), axis=1)

    def interaction_matrix(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """Mean absolute pairwise dot product of the interaction inputs, `[6, 6]`."""
        stacked = tf.stack(self.embeddings(features), axis=1)  # [batch, 6, dim]
        return tf.reduce_mean(tf.abs(tf.matmul(stacked, stacked, transpose_b=True)), axis=0)
