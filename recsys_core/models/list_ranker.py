"""The list ranker: a second stage that orders each user's candidate list, trained on the lists themselves.

Unlike the rating models (trained to predict a rating, RMSE), it is trained on the
candidates the job re-ranks, with the held-out interactions among them as labels,
and a listwise softmax loss (ListNet; the softmax cross-entropy of TF-Ranking):
`-sum_j y_j / sum(y) * log softmax(s)_j` over each list's valid candidates. Its
scorer is DCN-shaped (a `tfrs.layers.dcn.Cross` layer over the normalised
features, then an MLP), applied to every candidate alike.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core.features.keras_config import ArgumentsConfig, register
from recsys_core.models.base import Model

_MASKED = -1e9  # the logit of an empty candidate slot: no probability in the softmax


class ListSoftmaxLoss(tf.keras.losses.Loss):
    """Listwise softmax cross-entropy; labels `[users, k]` are relevance grades >= 0, -1 marks an empty slot.

    Lists without any relevant candidate add nothing (their target is undefined).
    """

    def call(self, labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        valid = labels >= 0
        grades = tf.where(valid, labels, 0.0)
        totals = tf.reduce_sum(grades, axis=-1, keepdims=True)
        log_probabilities = tf.nn.log_softmax(tf.where(valid, logits, _MASKED), axis=-1)
        per_list = -tf.reduce_sum(tf.math.divide_no_nan(grades, totals) * log_probabilities, axis=-1)
        return per_list * tf.cast(totals[:, 0] > 0, per_list.dtype)


@register
class ListRanker(ArgumentsConfig, Model):
    """`[users, k, features]` candidate features -> `[users, k]` scores (logits of the list's softmax).

    Args:
        mean, variance: `[features]` of the training candidates, to normalise the inputs.
        layers: widths of the MLP after the cross layer.
        cross_layers: how many `Cross` layers (DCN) mix the features first.
        l2: weight decay of every kernel.
        seed: seeds every initializer, so that fitting a ranker draws nothing from the global random state
            (the models fitted after it start as they would without it).
    """

    def __init__(
        self,
        mean,
        variance,
        layers: tuple[int, ...] = (64, 32),
        cross_layers: int = 1,
        l2: float = 1e-4,
        seed: int = 0,
    ):
        super().__init__()
        regularizer = tf.keras.regularizers.l2(l2)
        seeds = iter(range(seed * 100, seed * 100 + cross_layers + len(layers) + 1))

        def initializer():
            return tf.keras.initializers.GlorotUniform(seed=next(seeds))

        self.normalise = tf.keras.layers.Normalization(axis=-1, mean=mean, variance=variance)
        self.cross = [
            tfrs.layers.dcn.Cross(kernel_initializer=initializer(), kernel_regularizer=regularizer)
            for _ in range(cross_layers)
        ]
        self.hidden = [
            tf.keras.layers.Dense(n, "relu", kernel_initializer=initializer(), kernel_regularizer=regularizer)
            for n in layers
        ]
        self.score = tf.keras.layers.Dense(1, kernel_initializer=initializer(), kernel_regularizer=regularizer)
        self.task = tfrs.tasks.Ranking(loss=ListSoftmaxLoss())

    def call(self, features: tf.Tensor) -> tf.Tensor:
        first = self.normalise(features)
        x = first
        for cross in self.cross:
            x = cross(first, x)
        for layer in self.hidden:
            x = layer(x)
        return tf.squeeze(self.score(x), axis=-1)

    def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
        features, labels = inputs
        return self.task(labels=labels, predictions=self(features, training=training))


@register
class MeanOfRankers(ArgumentsConfig, tf.keras.Model):
    """The mean score of several `ListRanker`s fitted from other seeds: steadier than any one of them."""

    def __init__(self, members: list[ListRanker]) -> None:
        super().__init__()
        self.members = members

    def call(self, features: tf.Tensor) -> tf.Tensor:
        return tf.add_n([member(features) for member in self.members]) / len(self.members)
