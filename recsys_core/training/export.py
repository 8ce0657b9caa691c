"""Serving signatures over raw feature dicts for a bundle's SavedModel (`bundle.py` owns its layout).

Signatures (inputs are `[batch]` tensors named as the schema's columns;
multi-valued features and `user_history` are `[batch, n]` padded with b""):

    query_embedding(user_id, user features, timestamp, user_history) -> {"embedding": [batch, dim]}
    candidate_embedding(item_id, item features)                      -> {"embedding": [batch, dim]}
    retrieve(the query_embedding inputs)          -> {"scores": [batch, k], "item_ids": [batch, k]}
    <rating model>(user and item inputs the model reads) -> {"rating": [batch]}
    <rating model>_user_state(its user inputs)  -> {"state": [batch, S]}     (ranking, multitask:
    <rating model>_item_state(its item inputs)  -> {"state": [batch, S']}     the rating in halves,
    <rating model>_candidates(user_state, item_state, candidates [users, k])  for re-ranking many
                                                -> {"rating": [users, k]}      candidates per user)
    list_ranker(features [users, k, len(LIST_FEATURES)]) -> {"score": [users, k]}   (when one was chosen)

Each signature takes only the features its model reads (`Feature.feeds`); the
bundle's manifest lists every signature's inputs.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core import registry
from recsys_core.features.arrays import item_inputs, query_inputs, tensor_specs, user_inputs
from recsys_core.features.encoders import QueryEncoder
from recsys_core.features.keras_config import ArgumentsConfig, register
from recsys_core.models.base import RatesInHalves
from recsys_core.schema import HISTORY, FeatureSchema
from recsys_core.serving.list_features import LIST_FEATURES, LIST_RANKER


def build_signatures(
    models: dict[str, tfrs.Model],
    schema: FeatureSchema,
    item_embeddings: np.ndarray | None,
    item_ids: np.ndarray | None,
    k: int,
    list_ranker: tf.keras.Model | None = None,
) -> tuple[tf.Module, dict]:
    """A module tracking the models (and the list ranker), and its serving signatures."""
    module = tf.Module()
    module.models = dict(models)
    signatures = {}
    if list_ranker is not None:
        module.list_ranker = list_ranker
        signatures[LIST_RANKER] = _list_ranker_signature(list_ranker)
    towers = next((models[name] for name in registry.TOWER_MODELS if name in models), None)
    query_specs = tensor_specs(schema, query_inputs(schema))
    if towers is not None:
        query_tower, candidate_tower = towers.query_tower, towers.candidate_tower
        module.index = ExactIndex(query_model=query_tower, k=k)
        module.index.index(tf.constant(item_embeddings), identifiers=tf.constant(item_ids.astype(object)))

        @tf.function(input_signature=[query_specs])
        def query_embedding(features):
            return {"embedding": query_tower(features)}

        @tf.function(input_signature=[tensor_specs(schema, item_inputs(schema, "towers"))])
        def candidate_embedding(features):
            return {"embedding": candidate_tower(features)}

        @tf.function(input_signature=[query_specs])
        def retrieve(features):
            scores, ids = module.index(features)
            return {"scores": scores, "item_ids": ids}

        signatures.update(query_embedding=query_embedding, candidate_embedding=candidate_embedding, retrieve=retrieve)
    for name in registry.RATING_MODELS:
        if name in models:
            reads = registry.spec(name).reads
            inputs = user_inputs(schema, reads) + item_inputs(schema, reads)
            if reads_history(models[name]):
                inputs += (HISTORY,)
            signatures[name] = _rating_signature(models[name], tensor_specs(schema, inputs))
            rater = models[name].halves
            if rater is not None:
                user_side = tuple(n for n in inputs if n not in item_inputs(schema, reads))
                item_side = item_inputs(schema, reads)
                signatures.update(
                    _state_signatures(name, rater, *(tensor_specs(schema, s) for s in (user_side, item_side)))
                )
    return module, signatures


@register
class ExactIndex(ArgumentsConfig, tfrs.layers.factorized_top_k.BruteForce):
    """TFRS's exact top-k index, with a Keras config: its query model and `k` (the indexed candidates are its
    weights)."""

    def __init__(self, query_model: tf.keras.Model | None = None, k: int = 10, name: str | None = None) -> None:
        super().__init__(query_model=query_model, k=k, name=name)


def reads_history(model: tf.keras.Model) -> bool:
    """Whether any query encoder inside `model` reads `user_history`."""
    return any(isinstance(layer, QueryEncoder) and layer.use_history for layer in model.submodules)


def _state_signatures(name: str, rater: RatesInHalves, user_specs: dict, item_specs: dict) -> dict:
    """`<name>_user_state`, `<name>_item_state` and `<name>_candidates`: the model's rating in halves.

    `<name>_candidates(user_state [users, S], item_state [items, S'], candidates [users, k] item
    rows, -1 for none)` -> `{"rating": [users, k]}` rates every user's candidates from the states
    alone, so a re-ranker computes its user and item parts once each, not once per pair.
    """

    @tf.function(input_signature=[user_specs])
    def user_state(features):
        return {"state": rater.user_state(features)}

    @tf.function(input_signature=[item_specs])
    def item_state(features):
        return {"state": rater.item_state(features)}

    matrix = [None, None]
    pairs = {
        "user_state": tf.TensorSpec(matrix, tf.float32, "user_state"),
        "item_state": tf.TensorSpec(matrix, tf.float32, "item_state"),
        "candidates": tf.TensorSpec(matrix, tf.int64, "candidates"),
    }

    @tf.function(input_signature=[pairs])
    def candidates(inputs):
        items = tf.gather(inputs["item_state"], tf.maximum(inputs["candidates"], 0))  # [users, k, S']
        return {"rating": rater.rate_states(inputs["user_state"][:, None, :], items)}

    return {f"{name}_user_state": user_state, f"{name}_item_state": item_state, f"{name}_candidates": candidates}


def _list_ranker_signature(ranker: tf.keras.Model):
    spec = {"features": tf.TensorSpec([None, None, len(LIST_FEATURES)], tf.float32, "features")}

    @tf.function(input_signature=[spec])
    def list_ranker(inputs):
        return {"score": ranker(inputs["features"])}

    return list_ranker


def _rating_signature(model: tfrs.Model, specs: dict):
    @tf.function(input_signature=[specs])
    def rating(features):
        return {"rating": model(features)}

    return rating
