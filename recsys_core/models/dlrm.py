"""DLRM (dot interaction) and DCN (cross layers) rating scorers, built from the feature schema.

As in the KerasRS DLRM tutorial: the user and item ids and every categorical,
multi-valued and text feature the schema feeds to `dlrm` are embedded; numeric
and timestamp features (and, with `use_time`, sin/cos of the hour of day and of
the week) go through a bottom MLP to the embedding width; `DotInteraction` takes
all pairwise dot products; a top MLP predicts the rating, to which user and item
biases are added. The DCN variant feeds the concatenated vectors through `Cross`
layers instead (`CrossHead`).
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core.features.encoders import FeatureEmbeddings, IdEmbedding, cyclic_time
from recsys_core.features.keras_config import ArgumentsConfig, register
from recsys_core.features.vocabulary import FeatureVocabulary
from recsys_core.schema import ITEM_ID, TIMESTAMP, USER_ID, Feature


@register
class DlrmEmbeddings(ArgumentsConfig, tf.keras.layers.Layer):
    """Embeds the ids and categorical features, and the bottom MLP over the numbers.

    Returns a list of `[batch, embedding_dim]` tensors named by `input_names`:
    the bottom MLP's output first (when there are numbers), then the ids, then the features.
    """

    def __init__(
        self,
        features: tuple[Feature, ...],
        vocab: FeatureVocabulary,
        embedding_dim: int,
        bottom_layers: tuple[int, ...],
        l2: float,
        use_time: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(autocast=False, **kwargs)
        self._use_time = use_time
        self.user_id = IdEmbedding(vocab.user_ids, embedding_dim, l2)
        self.item_id = IdEmbedding(vocab.item_ids, embedding_dim, l2)
        self.features = FeatureEmbeddings(features, vocab, embedding_dim, l2)
        has_numbers = use_time or any(f.kind in ("numeric", "timestamp") for f in features)
        self.bottom = (
            tfrs.layers.blocks.MLP(list(bottom_layers) + [embedding_dim], final_activation="relu")
            if has_numbers
            else None
        )
        self.input_names = (("dense",) if has_numbers else ()) + (USER_ID, ITEM_ID, *self.features.embedded_names)

    def call(self, features: dict[str, tf.Tensor]) -> list[tf.Tensor]:
        dense, embedded = self.features(features)
        if self._use_time:
            time = tf.cast(cyclic_time(features[TIMESTAMP]), self.compute_dtype)
            dense = time if dense is None else tf.concat([dense, time], axis=1)
        ids = [self.user_id(features[USER_ID]), self.item_id(features[ITEM_ID])]
        return ([self.bottom(dense)] if self.bottom is not None else []) + ids + embedded


@register
class DotInteractionHead(tf.keras.layers.Layer):
    """DLRM's interaction: the first vector (the bottom MLP's) beside all pairwise dot products.

    `n` vectors `[batch, d]` -> `[batch, d + n(n-1)/2]`, in float32 under any dtype policy: the products of a
    few vectors cost little, and TensorFlow's CPU has no float16 kernel for the mask that picks them.
    """

    def __init__(self, self_interaction: bool = False, **kwargs) -> None:
        super().__init__(dtype="float32", **kwargs)
        self.self_interaction = self_interaction
        self.dot = tfrs.layers.feature_interaction.DotInteraction(self_interaction=self_interaction, dtype="float32")

    def call(self, vectors: list[tf.Tensor]) -> tf.Tensor:
        return tf.concat([vectors[0], self.dot(vectors)], axis=1)

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("dtype", None)  # always float32
        return {**config, "self_interaction": self.self_interaction}


@register
class CrossHead(tf.keras.layers.Layer):
    """DCN's interaction: `num_layers` `Cross` layers over the concatenated vectors, `[batch, n * d]`."""

    def __init__(self, num_layers: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cross = [tfrs.layers.feature_interaction.Cross() for _ in range(num_layers)]

    def get_config(self) -> dict:
        return {**super().get_config(), "num_layers": len(self.cross)}

    def call(self, vectors: list[tf.Tensor]) -> tf.Tensor:
        x0 = hidden = tf.concat(vectors, axis=1)
        for layer in self.cross:
            hidden = layer(x0, hidden)
        return hidden


@register
class DlrmScorer(ArgumentsConfig, tf.keras.Model):
    """`DlrmEmbeddings` -> an interaction head -> top MLP, plus user and item biases: features -> `[batch]` ratings.

    The biases (as in the ranking model) carry what a user or an item adds to every
    rating, which dot products with the few dense features express poorly. Ratings are
    summed in float32 under any dtype policy.
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
        super().__init__(autocast=False, **kwargs)
        self.embeddings = embeddings
        self.interaction = interaction
        self.user_bias, self.item_bias = biases
        self.top = tfrs.layers.blocks.MLP(list(top_layers) + [1], use_bias=True, final_activation=None)
        self.top_bias = self.add_weight(
            name="rating_mean", shape=(), initializer=tf.keras.initializers.Constant(rating_mean), autocast=False
        )

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        hidden = self.interaction(self.embeddings(features))
        rating = tf.cast(self.top(hidden), tf.float32) + self.user_bias(features) + self.item_bias(features)
        rating += self.top_bias
        return tf.squeeze(rating, axis=1)

    def interaction_matrix(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """Mean absolute pairwise dot product of the interaction inputs, `[n, n]`."""
        stacked = tf.stack(self.embeddings(features), axis=1)  # [batch, n, dim]
        return tf.reduce_mean(tf.abs(tf.matmul(stacked, stacked, transpose_b=True)), axis=0)
