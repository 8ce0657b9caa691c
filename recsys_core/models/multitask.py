"""Multitask model: shared towers trained on retrieval and rating losses."""

from __future__ import annotations

import tensorflow as tf

from recsys_core.features.keras_config import ArgumentsConfig, register
from recsys_core.models.base import Model
from recsys_core.models.rating import rating_task
from recsys_core.models.retrieval import retrieval_loss, retrieval_task
from recsys_core.schema import RATING


@register
class MultitaskModel(ArgumentsConfig, Model):
    """loss = retrieval_weight * retrieval loss + rating_weight * rating loss.

    The rating head reads the concatenated query and candidate embeddings. The retrieval loss is
    `RetrievalModel`'s (`temperature`, `remove_accidental_hits`, `correction`), the rating loss `RatingModel`'s
    (`global_batch_size`).
    """

    def __init__(
        self,
        query_tower: tf.keras.Model,
        candidate_tower: tf.keras.Model,
        rating_head: tf.keras.Model,
        temperature: float,
        remove_accidental_hits: bool,
        global_batch_size: int,
        retrieval_weight: float,
        rating_weight: float,
        correction: float = 1.0,
    ) -> None:
        super().__init__()
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.rating_head = rating_head
        self.retrieval_task = retrieval_task(temperature, remove_accidental_hits)
        self.rating_task = rating_task(global_batch_size)
        self._retrieval_weight = retrieval_weight
        self._rating_weight = rating_weight
        self._correction = correction

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """Predicted ratings, `[batch]`."""
        query, candidate = self.query_tower(features), self.candidate_tower(features)
        return tf.squeeze(self.rating_head(tf.concat([query, candidate], axis=1)), axis=1)

    # The rating in two halves (see `RankingScorer.user_state`): the head's first layer splits
    # into a query part and a candidate part.

    def user_state(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """User features -> `[users, h]`: the query embedding's share of the head's first layer, with its bias."""
        query = self.query_tower(features)
        first = self.rating_head.layers[0]
        return query @ first.kernel[: query.shape[-1]] + first.bias

    def item_state(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """Item features -> `[items, h]`: the candidate embedding's share of the head's first layer."""
        candidate = self.candidate_tower(features)
        return candidate @ self.rating_head.layers[0].kernel[-candidate.shape[-1] :]

    def rate_states(self, user: tf.Tensor, item: tf.Tensor) -> tf.Tensor:
        """Ratings of `user_state` and `item_state` rows paired by broadcasting, `[..., h]` -> `[...]`; as `call`."""
        hidden = self.rating_head.layers[0].activation(user + item)
        for layer in self.rating_head.layers[1:]:
            hidden = layer(hidden)
        return tf.squeeze(hidden, axis=-1)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        query, candidate = self.query_tower(features), self.candidate_tower(features)
        ratings = tf.squeeze(self.rating_head(tf.concat([query, candidate], axis=1)), axis=1)
        retrieval = retrieval_loss(self.retrieval_task, query, candidate, features, self._correction)
        rating_loss = self.rating_task(labels=features[RATING], predictions=ratings)
        return self._retrieval_weight * retrieval + self._rating_weight * rating_loss
