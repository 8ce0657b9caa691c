"""Model bundles: SavedModels with named signatures over raw feature dicts, plus a manifest.

A bundle is one directory per training run:

    <version>/saved_model/    signatures below; load with tf.saved_model.load alone
    <version>/manifest.json   version, creation time, config, feature schema,
                              vocabulary sizes, metrics, library versions
    <version>/feature_schema.json   the schema the models were built from (`schema.load_schema` reads it)
    <version>/metrics.json, config.json, vocabulary.json, plots/, tensorboard/, checkpoints/

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

Each signature takes only the features its model reads (`Feature.feeds`); the
manifest lists every signature's inputs.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import os

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core import registry
from recsys_core.features.arrays import item_inputs, query_inputs, tensor_specs, user_inputs
from recsys_core.schema import HISTORY, FeatureSchema

FORMAT_VERSION = 2  # 2: schema-driven inputs, `item_id` naming
MANIFEST = "manifest.json"
SAVED_MODEL = "saved_model"
LATEST = "LATEST"
FEATURE_SCHEMA = "feature_schema.json"
_LIBRARIES = ("tensorflow", "tf-keras", "tensorflow-recommenders", "apache-beam", "pyarrow", "numpy")


class BundleError(ValueError):
    """A bundle directory is missing, incomplete or incompatible; the message says which file."""


def new_version() -> str:
    """A sortable bundle version from the current UTC time, e.g. `20261123T172500Z`."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def build_signatures(
    models: dict[str, tfrs.Model],
    schema: FeatureSchema,
    item_embeddings: np.ndarray | None,
    item_ids: np.ndarray | None,
    k: int,
) -> tuple[tf.Module, dict]:
    """A module tracking the models, and its serving signatures."""
    module = tf.Module()
    module.models = dict(models)
    signatures = {}
    towers = next((models[name] for name in registry.TOWER_MODELS if name in models), None)
    query_specs = tensor_specs(schema, query_inputs(schema))
    if towers is not None:
        query_tower, candidate_tower = towers.query_tower, towers.candidate_tower
        module.index = tfrs.layers.factorized_top_k.BruteForce(query_model=query_tower, k=k)
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
            rater = getattr(models[name], "scorer", models[name])
            if hasattr(rater, "rate_states"):
                user_side = tuple(n for n in inputs if n not in item_inputs(schema, reads))
                item_side = item_inputs(schema, reads)
                signatures.update(
                    _state_signatures(name, rater, *(tensor_specs(schema, s) for s in (user_side, item_side)))
                )
    return module, signatures


def reads_history(model: tf.keras.Model) -> bool:
    """Whether any query encoder inside `model` reads `user_history`."""
    return any(getattr(layer, "_use_history", False) for layer in model.submodules)


def _state_signatures(name: str, rater: tf.keras.Model, user_specs: dict, item_specs: dict) -> dict:
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


def _rating_signature(model: tfrs.Model, specs: dict):
    @tf.function(input_signature=[specs])
    def rating(features):
        return {"rating": model(features)}

    return rating


def save_bundle(directory: str, module: tf.Module, signatures: dict, schema: FeatureSchema, manifest: dict) -> None:
    """Writes the SavedModel, the feature schema and the manifest (with signature specs and library versions)."""
    # Saving logs a warning per Keras model about `get_config` and long notes on renamed
    # captures; neither says anything about the bundle, so they are kept off the console.
    loggers = [tf.get_logger(), logging.getLogger("absl")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        tf.saved_model.save(module, os.path.join(directory, SAVED_MODEL), signatures=signatures)
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        **manifest,
        "feature_schema": schema.to_dict(),
        "signatures": {name: _describe(fn) for name, fn in signatures.items()},
        "library_versions": {lib: _version(lib) for lib in _LIBRARIES},
    }
    write_json(os.path.join(directory, FEATURE_SCHEMA), schema.to_dict())
    write_json(os.path.join(directory, MANIFEST), manifest)


def update_manifest(directory: str, changes: dict) -> None:
    """Rewrites the manifest of a bundle being assembled with `changes` merged in (e.g. its evaluation)."""
    path = os.path.join(directory, MANIFEST)
    write_json(path, {**json.loads(read_text(path)), **changes})


def _describe(fn) -> dict:
    concrete = fn.get_concrete_function()
    inputs = concrete.structured_input_signature[0][0]
    outputs = concrete.structured_outputs
    return {
        "inputs": {name: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()} for name, spec in inputs.items()},
        "outputs": {name: {"dtype": t.dtype.name, "shape": t.shape.as_list()} for name, t in outputs.items()},
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def write_text(path: str, text: str) -> None:
    """Writes a file atomically: a reader sees the old file or the whole new one."""
    partial = path + ".partial"
    with open(partial, "w") as handle:
        handle.write(text)
    os.replace(partial, path)


def read_text(path: str) -> str:
    with tf.io.gfile.GFile(path) as handle:
        return handle.read()


def write_json(path: str, value) -> None:
    write_text(path, json.dumps(value, indent=2, sort_keys=True, default=str))


def resolve_bundle(path: str) -> str:
    """The bundle directory `path` names: itself, or the one its `LATEST` file points at.

    Paths go through `tf.io.gfile`, so bundles on object stores (gs://...) resolve too.
    """
    if tf.io.gfile.exists(os.path.join(path, LATEST)):
        path = os.path.join(path, read_text(os.path.join(path, LATEST)).strip())
    if not tf.io.gfile.isdir(path):
        raise BundleError(f"model bundle {path} does not exist; train one with `python train.py` first")
    return path


def read_manifest(path: str) -> dict:
    """Reads and checks a bundle's manifest; raises `BundleError` naming what is wrong."""
    bundle = resolve_bundle(path)
    manifest_path = os.path.join(bundle, MANIFEST)
    if not tf.io.gfile.exists(manifest_path):
        raise BundleError(f"{bundle} is not a complete model bundle: {MANIFEST} is missing; retrain or pick another")
    try:
        manifest = json.loads(read_text(manifest_path))
    except json.JSONDecodeError as error:
        raise BundleError(f"{manifest_path} is not valid JSON ({error}); the bundle is damaged") from error
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path} has bundle format {manifest.get('format_version')!r}; this code reads format "
            f"{FORMAT_VERSION}. Retrain with this version or use a matching release"
        )
    if not tf.io.gfile.exists(os.path.join(bundle, SAVED_MODEL, "saved_model.pb")):
        raise BundleError(f"{bundle}/{SAVED_MODEL}/saved_model.pb is missing; the bundle is incomplete")
    manifest["path"] = bundle
    return manifest


def bundle_schema(manifest: dict) -> FeatureSchema:
    """The feature schema a bundle's models were built from, named by its file in messages."""
    return FeatureSchema.from_dict(manifest["feature_schema"], source=os.path.join(manifest["path"], FEATURE_SCHEMA))


def load_bundle(path: str):
    """`(manifest, loaded SavedModel)` of a checked bundle."""
    manifest = read_manifest(path)
    return manifest, tf.saved_model.load(os.path.join(manifest["path"], SAVED_MODEL))
