"""Two-tower retrieval model."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core.distribute import dtype_policy
from recsys_core.features.keras_config import ArgumentsConfig, register
from recsys_core.models.base import Model
from recsys_core.schema import CANDIDATE_PROBABILITY, ITEM_ID


def candidate_keys(item_ids: tf.Tensor) -> tf.Tensor:
    """int64 keys of `[batch]` item ids; comparing these instead of strings keeps
    accidental-hit removal (a `[batch, batch]` comparison) cheap."""
    return tf.strings.to_hash_bucket_fast(item_ids, 2**62)


@register
class Tower(ArgumentsConfig, tf.keras.Model):
    """Feature encoder followed by dense layers: features -> `[batch, layer_sizes[-1]]` float32 (whatever the
    dtype policy, so that in-batch softmax and the exported embeddings are float32)."""

    def __init__(self, encoder: tf.keras.layers.Layer, layer_sizes: tuple[int, ...], **kwargs) -> None:
        super().__init__(autocast=False, **kwargs)
        self.encoder = encoder
        self.dense = tfrs.layers.blocks.MLP(list(layer_sizes)) if layer_sizes else None

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        encoded = self.encoder(features)
        return tf.cast(self.dense(encoded) if self.dense is not None else encoded, tf.float32)


@register
class RetrievalModel(ArgumentsConfig, Model):
    """Query and candidate towers trained with in-batch softmax (`retrieval_task`; `correction`: see
    `retrieval_loss`).

    Factorized top-K metrics are not computed here: they cost a pass over all
    candidates per batch, so `training.trainer.evaluate` computes them once after training.
    """

    def __init__(
        self,
        query_tower: tf.keras.Model,
        candidate_tower: tf.keras.Model,
        temperature: float,
        remove_accidental_hits: bool,
        correction: float,
    ) -> None:
        super().__init__()
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.task = retrieval_task(temperature, remove_accidental_hits)
        self._correction = correction

    def call(self, features: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        return self.query_tower(features), self.candidate_tower(features)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        query, candidate = self(features)
        return retrieval_loss(self.task, query, candidate, features, self._correction)


def retrieval_task(temperature: float, remove_accidental_hits: bool) -> tfrs.tasks.Retrieval:
    """In-batch softmax (optionally without accidental hits); reports the epoch's mean loss. In float32
    under any dtype policy: the `[batch, batch]` logits and their softmax need its range."""
    with dtype_policy("float32"):
        return tfrs.tasks.Retrieval(
            temperature=temperature,
            remove_accidental_hits=remove_accidental_hits,
            loss_metrics=[tf.keras.metrics.Mean(name="retrieval_loss")],
        )


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
