"""Two-tower retrieval model."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core.models.base import Model
from recsys_core.schema import CANDIDATE_PROBABILITY, ITEM_ID


def candidate_keys(item_ids: tf.Tensor) -> tf.Tensor:
    """int64 keys of `[batch]` item ids; comparing these instead of strings keeps
    accidental-hit removal (a `[batch, batch]` comparison) cheap."""
    return tf.strings.to_hash_bucket_fast(item_ids, 2**62)


class Tower(tf.keras.Model):
    """Feature encoder followed by dense layers: features -> `[batch, layer_sizes[-1]]` float32 (whatever the
    dtype policy, so that in-batch softmax and the exported embeddings are float32)."""

    def __init__(self, encoder: tf.keras.layers.Layer, layer_sizes: tuple[int, ...], **kwargs) -> None:
        super().__init__(autocast=False, **kwargs)
        self.encoder = encoder
        self.dense = tfrs.layers.blocks.MLP(list(layer_sizes)) if layer_sizes else None

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        encoded = self.encoder(features)
        return tf.cast(self.dense(encoded) if self.dense is not None else encoded, tf.float32)


class RetrievalModel(Model):
    """Query and candidate towers trained with in-batch softmax (`tfrs.tasks.Retrieval`).

    Factorized top-K metrics are not computed here: they cost a pass over all
    candidates per batch, so `training.trainer.evaluate` computes them once after training.
    """

    def __init__(
        self,
        query_tower: tf.keras.Model,
        candidate_tower: tf.keras.Model,
        task: tfrs.tasks.Retrieval,
        correction: float,
    ) -> None:
        super().__init__()
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.task = task
        self._correction = correction

    def call(self, features: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        return self.query_tower(features), self.candidate_tower(features)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        query, candidate = self(features)
        return retrieval_loss(self.task, query, candidate, features, self._correction)


def retrieval_loss(
    task: tfrs.tasks.Retrieval,
    query: tf.Tensor,
    candidate: tf.Tensor,
    features: dict[str, tf.Tensor],
    correction: float,
) -> tf.Tensor:
    """In-batch softmax of `[batch, dim]` query and candidate embeddings.

    Each candidate's logit is lowered by `correction` times the log of its training
    frequency: 1 is the full logQ correction of in-batch sampling (Yi et al., 2019),
    0 none (popular items, frequent negatives, are then pushed down).
    """
    return task(
        query,
        candidate,
        candidate_sampling_probability=features[CANDIDATE_PROBABILITY] ** correction if correction else None,
        candidate_ids=candidate_keys(features[ITEM_ID]),
        compute_metrics=False,
    )
