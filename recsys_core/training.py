"""Fit, evaluate and export every configured model under one `tf.distribute` strategy."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core import evaluation, export, plots
from recsys_core.config import ExperimentConfig
from recsys_core.data import DataError, InteractionData, load_data
from recsys_core.data.pipeline import example_arrays, make_dataset, steps_per_epoch
from recsys_core.data.splits import split
from recsys_core.distribute import is_chief, make_strategy, split_cpu
from recsys_core.features.schema import CONTEXT_FEATURES, ITEM_FEATURES, USER_FEATURES, feature_arrays, tensor_specs
from recsys_core.features.vocabulary import FeatureVocabulary, fit_vocabulary
from recsys_core.models.builders import RATING_MODELS, build_model, build_optimizer
from recsys_core.models.dlrm import INTERACTION_INPUTS

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainedModel:
    """A fitted model with its per-epoch history, test metrics and timing."""

    model: tfrs.Model
    history: dict[str, list[float]]
    metrics: dict[str, float]


def run_experiment(config: ExperimentConfig) -> str | None:
    """Trains, evaluates and exports; returns the bundle directory, or None on non-chief workers.

    The bundle is assembled in a hidden staging directory and renamed into place
    when complete, then `LATEST` is updated: readers never see a partial bundle.
    Non-chief workers take part in every collective step but write to scratch.
    """
    config.validate()
    if config.training.cpu_devices:
        split_cpu(config.training.cpu_devices)
    strategy = make_strategy(config.training.strategy, config.training.tpu)
    tf.keras.utils.set_random_seed(config.training.seed)

    data = load_data(config.data)
    if data.lineage.get("implicit") and set(config.training.models) & set(RATING_MODELS):
        raise DataError(
            "the interactions table has no rating column, so rating models cannot be trained; "
            "use --models retrieval or add a rating column"
        )
    train, test = split(data, config.data.split, config.data.test_fraction, config.data.seed)
    vocab = fit_vocabulary(train)
    train_arrays, test_arrays = example_arrays(train, train), example_arrays(test, train)
    log.info(
        "%d training and %d test ratings; %d replicas",
        train.ratings.num_rows,
        test.ratings.num_rows,
        strategy.num_replicas_in_sync,
    )

    chief = is_chief(strategy)
    version = export.new_version()
    root = os.path.abspath(config.training.output_dir)
    staging = os.path.join(root, f".{version}.incomplete") if chief else tempfile.mkdtemp(prefix="recsys-worker-")
    try:
        trained = {
            name: fit_and_evaluate(name, config, vocab, strategy, train, test, train_arrays, test_arrays, staging)
            for name in config.training.models
        }
        _write_plots(trained, test_arrays, os.path.join(staging, "plots"))
        manifest = {
            "bundle_version": version,
            "models": list(trained),
            "config": config.to_dict(),
            "data_lineage": data.lineage,
            "split": {"kind": config.data.split, "train": train.ratings.num_rows, "test": test.ratings.num_rows},
            "vocabulary_sizes": vocab.sizes(),
            "feature_schema": _feature_schema(),
            "metrics": {name: result.metrics for name, result in trained.items()},
            "index_k": config.training.index_k,
            "num_replicas": strategy.num_replicas_in_sync,
        }
        _export(staging, trained, train, vocab, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not chief:
        shutil.rmtree(staging, ignore_errors=True)
        return None
    final = os.path.join(root, version)
    os.replace(staging, final)
    export.write_text(os.path.join(root, export.LATEST), version)
    return final


def _write_plots(trained: dict[str, TrainedModel], test_arrays: dict[str, np.ndarray], directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    for name, result in trained.items():
        plots.plot_history(name, result.history, os.path.join(directory, f"{name}_training.png"))
        if name in ("dlrm", "dcn"):
            batch = {k: tf.constant(v[:4096]) for k, v in test_arrays.items()}
            matrix = result.model.scorer.interaction_matrix(batch).numpy()
            path = os.path.join(directory, f"{name}_interactions.png")
            plots.plot_interactions(matrix, INTERACTION_INPUTS, path, f"{name}: mean |<e_i, e_j>|")


def _export(
    staging: str, trained: dict[str, TrainedModel], train: InteractionData, vocab: FeatureVocabulary, manifest: dict
) -> None:
    item_embeddings, item_ids = _item_index(trained, train)
    models = {name: result.model for name, result in trained.items()}
    module, signatures = export.build_signatures(models, item_embeddings, item_ids, manifest["index_k"])
    export.write_json(os.path.join(staging, "metrics.json"), manifest["metrics"])
    export.write_json(os.path.join(staging, "config.json"), manifest["config"])
    export.write_text(os.path.join(staging, "vocabulary.json"), vocab.to_json())
    export.save_bundle(staging, module, signatures, manifest)


def fit_and_evaluate(
    name: str,
    config: ExperimentConfig,
    vocab: FeatureVocabulary,
    strategy: tf.distribute.Strategy,
    train: InteractionData,
    test: InteractionData,
    train_arrays: dict[str, np.ndarray],
    test_arrays: dict[str, np.ndarray],
    run_dir: str,
) -> TrainedModel:
    """Builds the named model inside `strategy.scope()`, fits it with per-replica input, evaluates it."""
    fit = getattr(config, name)
    with strategy.scope():
        model = build_model(name, config, vocab)
        model.compile(optimizer=build_optimizer(fit))
    batch = fit.batch_size
    train_data = strategy.distribute_datasets_from_function(
        lambda context: make_dataset(train_arrays, batch, config.training.seed, context)
    )
    test_data = strategy.distribute_datasets_from_function(
        lambda context: make_dataset(test_arrays, batch, None, context)
    )
    callbacks = [
        tf.keras.callbacks.TensorBoard(log_dir=os.path.join(run_dir, "tensorboard", name)),
        tf.keras.callbacks.ModelCheckpoint(
            os.path.join(run_dir, "checkpoints", name, "epoch-{epoch:02d}"), save_weights_only=True
        ),
    ]
    num_train = len(train_arrays["movie_id"])
    steps = steps_per_epoch(num_train, batch)
    started = time.perf_counter()
    history = model.fit(
        train_data,
        epochs=fit.epochs,
        steps_per_epoch=steps,
        validation_data=test_data,
        validation_steps=steps_per_epoch(len(test_arrays["movie_id"]), batch),
        callbacks=callbacks,
        verbose=config.training.verbose,
    )
    seconds = time.perf_counter() - started
    metrics = evaluate(name, model, config, vocab, train, test, test_arrays)
    metrics["train_seconds"] = seconds
    metrics["train_examples_per_second"] = steps * batch * fit.epochs / seconds
    return TrainedModel(model, {k: [float(v) for v in vs] for k, vs in history.history.items()}, metrics)


def evaluate(
    name: str,
    model: tfrs.Model,
    config: ExperimentConfig,
    vocab: FeatureVocabulary,
    train: InteractionData,
    test: InteractionData,
    test_arrays: dict[str, np.ndarray],
) -> dict[str, float]:
    """Test-split metrics: RMSE for rating models, retrieval metrics for models with towers."""
    metrics = {}
    if name in RATING_MODELS:
        metrics.update(evaluation.rating_metrics(tf.function(model), test_arrays, vocab.rating_mean))
    if name in ("retrieval", "multitask"):
        metrics.update(
            evaluation.retrieval_metrics(
                tf.function(model.query_tower),
                tf.function(model.candidate_tower),
                train,
                test,
                test_arrays,
                config.training.eval_ks,
            )
        )
    return metrics


def _item_index(trained: dict[str, TrainedModel], train: InteractionData):
    towers = trained.get("retrieval") or trained.get("multitask")
    if towers is None:
        return None, None
    embeddings = evaluation.batched(
        tf.function(towers.model.candidate_tower), feature_arrays(train.items, ITEM_FEATURES)
    )
    return embeddings, train.items["movie_id"].to_numpy(zero_copy_only=False).astype(object)


def _feature_schema() -> dict:
    specs = tensor_specs(USER_FEATURES + CONTEXT_FEATURES + ITEM_FEATURES)
    return {
        "user": list(USER_FEATURES),
        "context": list(CONTEXT_FEATURES),
        "item": list(ITEM_FEATURES),
        "dtypes": {name: spec.dtype.name for name, spec in specs.items()},
    }
